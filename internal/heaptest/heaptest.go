// Package heaptest measures what a structure holds on the heap, for tests
// that show a bounded cache stays bounded in bytes.
package heaptest

import "runtime"

// Retained measures the heap the value build returns keeps: the live heap
// while it is alive, minus the live heap once it is not. Callers must not
// run in parallel with other tests: it reads the whole process's heap.
func Retained(build func() any) uint64 {
	var with, without runtime.MemStats
	v := build()
	runtime.GC()
	runtime.ReadMemStats(&with)
	runtime.KeepAlive(v) // v is dead from here on
	runtime.GC()
	runtime.ReadMemStats(&without)
	if with.HeapAlloc < without.HeapAlloc {
		return 0
	}
	return with.HeapAlloc - without.HeapAlloc
}
