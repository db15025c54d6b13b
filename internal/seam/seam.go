// Package seam gives the retryhttp command's simulations the test seams of
// a retryhttp.Transport (its clock, its wait and its randomness) without
// adding them to the library's public API: package retryhttp sets Set in
// an init, and only packages of this module may import this one.
//
// This package must not import retryhttp (retryhttp imports it).
package seam

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"
)

// Clock is what a Transport reads time from, waits with, and draws its
// jitter from. Every field must be set.
type Clock struct {
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	Rand  *rand.Rand
}

// Set gives rt, a *retryhttp.Transport that has sent nothing yet, the
// clock c; it panics for any other RoundTripper. Package retryhttp sets
// it in its init.
var Set func(rt http.RoundTripper, c Clock)
