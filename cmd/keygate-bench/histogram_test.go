package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverEveryValue(t *testing.T) {
	// Every value falls in a bucket whose range holds it, buckets are in
	// order, and above the exact range a bucket is at most 0.2% wide.
	values := []uint64{0, 1, 2, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 1e5, 1e6, 123456789, 1<<32 - 1}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		values = append(values, r.Uint64N(1<<32))
	}
	for _, v := range values {
		i := bucketOf(v)
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if v >= histSub && float64(hi-lo+1)/float64(lo) > 0.002 {
			t.Fatalf("bucket %d = [%d, %d] is wider than 0.2%%", i, lo, hi)
		}
	}
	for i := 1; i < histBuckets; i++ {
		_, prevHi := bucketRange(i - 1)
		lo, _ := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, bucket %d ends at %d", i, lo, i-1, prevHi)
		}
	}
	if got := bucketOf(1 << 40); got != histBuckets-1 {
		t.Errorf("a value past the range went to bucket %d, want the last, %d", got, histBuckets-1)
	}
}

func TestQuantileNearestRank(t *testing.T) {
	var h histogram
	for _, us := range []int{4, 1, 3, 2} {
		h.record(time.Duration(us) * time.Microsecond)
	}
	for q, want := range map[float64]time.Duration{0.25: 1, 0.5: 2, 0.75: 3, 0.99: 4, 1: 4, 0.01: 1} {
		if got := h.quantile(q); got != want*time.Microsecond {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want*time.Microsecond)
		}
	}
}

func TestQuantileMatchesSortedSamples(t *testing.T) {
	// Against the exact percentiles of a skewed sample, the histogram is
	// within its bucket width.
	r := rand.New(rand.NewPCG(3, 4))
	var h histogram
	var samples []time.Duration
	for range 100000 {
		d := time.Duration(200+r.ExpFloat64()*800) * time.Microsecond
		samples = append(samples, d)
		h.record(d)
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := samples[int(q*float64(len(samples)))-1]
		got := h.quantile(q)
		if diff := got - exact; diff < -exact/500-time.Microsecond || diff > exact/500+time.Microsecond {
			t.Errorf("p%v = %v, exact %v", q*100, got, exact)
		}
	}
}

func TestQuantileStaysWithinObservedRange(t *testing.T) {
	var h histogram
	h.record(5000 * time.Microsecond) // a wide bucket: [4992, 5007]
	if got := h.quantile(0.5); got != 5*time.Millisecond {
		t.Errorf("the only value is 5ms, p50 = %v", got)
	}
	var empty histogram
	if got := empty.quantile(0.99); got != 0 {
		t.Errorf("empty p99 = %v, want 0", got)
	}
	h.record(-time.Second)
	if h.minUS != 0 || h.counts[0] != 1 {
		t.Errorf("a negative duration was not counted as zero")
	}
}

func TestMerge(t *testing.T) {
	var a, b, all histogram
	for i := range 1000 {
		d := time.Duration(i*37%5000) * time.Microsecond
		all.record(d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	var merged histogram
	merged.merge(&a)
	merged.merge(&histogram{})
	merged.merge(&b)
	if merged != all {
		t.Fatalf("merged histogram differs: total %d/%d, min %d/%d, max %d/%d",
			merged.total, all.total, merged.minUS, all.minUS, merged.maxUS, all.maxUS)
	}
}
