package authz

import (
	"context"
	"fmt"
	"time"
)

// Granularities of a key's usage history.
const (
	GranularityHour = "hour"
	GranularityDay  = "day"
)

// Bounds of one usage history answer: intervals of each granularity, and
// how far back a default range reaches.
const (
	MaxUsageHours    = 31 * 24
	MaxUsageDays     = 366
	defaultUsageHour = 24
	defaultUsageDays = 30
)

// UsageQuery selects a key's usage history: [Since, Until) in intervals of
// Granularity (hour when empty). Without Until, up to the end of the
// current interval; without Since, the day (hours) or 30 days (days)
// before Until.
type UsageQuery struct {
	Since, Until *time.Time
	Granularity  string
}

// UsageInterval is a key's counts over one interval.
type UsageInterval struct {
	Start time.Time `json:"start"`
	UsageCounts
}

// UsageReport is a key's usage history: every interval of the range,
// oldest first, those without requests included, and their total.
type UsageReport struct {
	KeyID       string          `json:"key_id"`
	Granularity string          `json:"granularity"`
	Since       time.Time       `json:"since"`
	Until       time.Time       `json:"until"`
	Intervals   []UsageInterval `json:"data"`
	Total       UsageCounts     `json:"total"`
}

// KeyUsage returns a key's usage history. Counts reach the store in
// batches, so the last second or so may not show yet. Returns ENOTFOUND
// and EFORBIDDEN as Key does, and EINVALID for a bad range.
func (s *KeyService) KeyUsage(ctx context.Context, id string, q UsageQuery) (*UsageReport, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	if q.Granularity == "" {
		q.Granularity = GranularityHour
	}
	step, since, until, err := usageRange(q, s.now())
	if err != nil {
		return nil, err
	}
	key, err := s.keyFor(ctx, actor, id, ActionRead)
	if err != nil {
		return nil, err
	}
	if s.UsageLog == nil {
		return nil, Errorf(EUNAVAILABLE, "usage history is not kept by this instance")
	}
	rows, err := s.UsageLog.FindUsage(ctx, key.ID, since, until)
	if err != nil {
		return nil, err
	}
	n := int(until.Sub(since) / step)
	rep := &UsageReport{KeyID: key.ID, Granularity: q.Granularity, Since: since, Until: until, Intervals: make([]UsageInterval, n)}
	for i := range rep.Intervals {
		rep.Intervals[i].Start = since.Add(time.Duration(i) * step)
	}
	for _, r := range rows {
		i := int(r.Hour.Sub(since) / step)
		if i < 0 || i >= n {
			continue
		}
		rep.Intervals[i].add(r.UsageCounts)
		rep.Total.add(r.UsageCounts)
	}
	return rep, nil
}

// usageRange checks a usage query and returns its step and its range,
// aligned to whole intervals (UTC).
func usageRange(q UsageQuery, now time.Time) (time.Duration, time.Time, time.Time, error) {
	step, maxN, defaultN, unit := time.Hour, MaxUsageHours, defaultUsageHour, "hours"
	switch q.Granularity {
	case GranularityHour:
	case GranularityDay:
		step, maxN, defaultN, unit = 24*time.Hour, MaxUsageDays, defaultUsageDays, "days"
	default:
		return 0, time.Time{}, time.Time{}, Invalid(FieldError{Field: "granularity", Message: "must be hour or day"})
	}
	until := now.UTC().Truncate(step).Add(step)
	if q.Until != nil {
		until = q.Until.UTC()
		if t := until.Truncate(step); !t.Equal(until) {
			until = t.Add(step)
		}
	}
	since := until.Add(-time.Duration(defaultN) * step)
	if q.Since != nil {
		since = q.Since.UTC().Truncate(step)
	}
	switch n := until.Sub(since) / step; {
	case n <= 0:
		return 0, time.Time{}, time.Time{}, Invalid(FieldError{Field: "since", Message: "must lie before until"})
	case n > time.Duration(maxN):
		return 0, time.Time{}, time.Time{}, Invalid(FieldError{Field: "since",
			Message: fmt.Sprintf("the range may span at most %d %s", maxN, unit)})
	}
	return step, since, until, nil
}
