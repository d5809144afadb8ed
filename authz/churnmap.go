package authz

// churnMap is a map for bounded caches, whose entries are evicted and
// replaced all the time. A Go map's tables never shrink, and under steady
// delete-and-insert churn they keep growing even while the number of
// entries stays at its cap (deleted slots are reused only in part): a
// decision cache shard of 625 entries measured 2.5 MiB after 30 million
// replacements. churnMap copies its entries into a fresh map once it has
// deleted as many entries as it may hold, which keeps its tables near the
// size of the live entries at an amortized cost of one copy per deletion.
// It is not safe for concurrent use; callers hold their own lock.
type churnMap[K comparable, V any] struct {
	m       map[K]V
	deleted int
	limit   int // deletions before a rebuild: the most entries expected
}

func newChurnMap[K comparable, V any](limit int) churnMap[K, V] {
	return churnMap[K, V]{m: make(map[K]V), limit: max(limit, 16)}
}

func (c *churnMap[K, V]) get(k K) (V, bool) {
	v, ok := c.m[k]
	return v, ok
}

func (c *churnMap[K, V]) put(k K, v V) { c.m[k] = v }

func (c *churnMap[K, V]) len() int { return len(c.m) }

func (c *churnMap[K, V]) delete(k K) {
	if _, ok := c.m[k]; !ok {
		return
	}
	delete(c.m, k)
	c.deleted++
	if c.deleted >= c.limit {
		fresh := make(map[K]V, len(c.m))
		for k, v := range c.m {
			fresh[k] = v
		}
		c.m, c.deleted = fresh, 0
	}
}

// evictOne deletes an arbitrary entry (map iteration starts at a random
// place), reporting whether there was one.
func (c *churnMap[K, V]) evictOne() bool {
	for k := range c.m {
		c.delete(k)
		return true
	}
	return false
}

// reset drops every entry and the tables that held them.
func (c *churnMap[K, V]) reset() {
	c.m, c.deleted = make(map[K]V), 0
}
