package main

import (
	"math/bits"
	"time"
)

// histogram records latencies in microseconds in log-linear buckets, like
// HdrHistogram: exact below 1,024 µs, and within 0.2% above, in a fixed
// array. Each load generator worker fills its own (no locks on the request
// path) and the run merges them at the end.
type histogram struct {
	counts [histBuckets]uint64
	total  uint64
	minUS  uint64
	maxUS  uint64
}

const (
	// histSubBits sets the precision: values below 1<<histSubBits µs get
	// a bucket each; above, each power of two is cut into 1<<(histSubBits-1)
	// buckets.
	histSubBits = 10
	histSub     = 1 << histSubBits
	histHalf    = histSub / 2
	// histMaxShift bounds the range: 1<<(histSubBits+histMaxShift) µs is
	// about 71 minutes, far beyond any request timeout.
	histMaxShift = 22
	histBuckets  = histSub + histMaxShift*histHalf
)

// record adds one latency; negative durations count as zero and values past
// the range land in the last bucket.
func (h *histogram) record(d time.Duration) {
	us := uint64(max(d.Microseconds(), 0))
	h.counts[bucketOf(us)]++
	if h.total == 0 || us < h.minUS {
		h.minUS = us
	}
	h.maxUS = max(h.maxUS, us)
	h.total++
}

// merge adds o's counts to h.
func (h *histogram) merge(o *histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.minUS < h.minUS {
		h.minUS = o.minUS
	}
	h.maxUS = max(h.maxUS, o.maxUS)
	h.total += o.total
}

// quantile returns the latency at or below which a fraction q (0 < q ≤ 1)
// of the recorded requests fall: the nearest-rank definition, so the p50 of
// {1, 2, 3, 4} is 2. It reports the middle of the bucket, clamped to the
// observed minimum and maximum; 0 when nothing was recorded.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.999999999)
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			us := min(max(lo+(hi-lo)/2, h.minUS), h.maxUS)
			return time.Duration(us) * time.Microsecond
		}
	}
	return time.Duration(h.maxUS) * time.Microsecond
}

// bucketOf maps a latency in µs to its bucket index.
func bucketOf(us uint64) int {
	if us < histSub {
		return int(us)
	}
	shift := bits.Len64(us) - histSubBits // ≥ 1
	if shift > histMaxShift {
		return histBuckets - 1
	}
	mantissa := us >> shift // in [histHalf, histSub)
	return histSub + (shift-1)*histHalf + int(mantissa-histHalf)
}

// bucketRange returns the values [lo, hi] bucket i holds.
func bucketRange(i int) (lo, hi uint64) {
	if i < histSub {
		return uint64(i), uint64(i)
	}
	shift := (i-histSub)/histHalf + 1
	mantissa := uint64((i-histSub)%histHalf + histHalf)
	lo = mantissa << shift
	return lo, lo + 1<<shift - 1
}
