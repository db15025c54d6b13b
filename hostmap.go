package retryhttp

import (
	"sync"
	"sync/atomic"
)

// hostMap keeps a value per host, for at most limit hosts. Reads take no
// lock: the map is copied on every write, and writes (a host seen for the
// first time) are rare. An empty hostMap costs one atomic load to ask.
type hostMap[V any] struct {
	n  atomic.Int32                   // len of the map
	m  atomic.Pointer[map[hostKey]*V] // copied on write
	mu sync.Mutex                     // serializes writers
}

// get returns the value of the host named by k, or nil.
func (hm *hostMap[V]) get(k hostKey) *V {
	if hm.n.Load() == 0 {
		return nil
	}
	if m := hm.m.Load(); m != nil {
		return (*m)[k]
	}
	return nil
}

// getOrAdd returns the value of the host named by k, adding a new one when
// it is not there. When limit hosts are known, evict chooses which to
// forget first: it is given the copy of the map to delete from.
func (hm *hostMap[V]) getOrAdd(k hostKey, limit int, newValue func() *V, evict func(map[hostKey]*V)) *V {
	if v := hm.get(k); v != nil {
		return v
	}
	hm.mu.Lock()
	defer hm.mu.Unlock()
	var old map[hostKey]*V
	if m := hm.m.Load(); m != nil {
		if v := (*m)[k]; v != nil {
			return v
		}
		old = *m
	}
	next := make(map[hostKey]*V, len(old)+1)
	for key, v := range old {
		next[key] = v
	}
	if len(next) >= limit {
		evict(next)
	}
	v := newValue()
	next[k] = v
	hm.m.Store(&next)
	hm.n.Store(int32(len(next)))
	return v
}

// remove forgets the host k names, when its value is still v.
func (hm *hostMap[V]) remove(k hostKey, v *V) {
	hm.mu.Lock()
	defer hm.mu.Unlock()
	m := hm.m.Load()
	if m == nil || (*m)[k] != v {
		return
	}
	next := make(map[hostKey]*V, len(*m))
	for key, w := range *m {
		if key != k {
			next[key] = w
		}
	}
	hm.m.Store(&next)
	hm.n.Store(int32(len(next)))
}
