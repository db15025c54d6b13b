package fleet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The server serves one attempt at a time, in order of arrival, and does
// the work of an attempt its client gave up on: what follows it waits for
// that work all the same.
func TestServerQueueDoesTheWorkOfTimedOutAttempts(t *testing.T) {
	ms := time.Millisecond
	c := Config{Capacity: 1000, OutageAt: time.Second, Outage: time.Second, Trigger: Stall, AttemptTimeout: time.Second}
	s := newServer(&c)

	at, a := s.attempt(0)
	assert.Equal(t, answerOK, a)
	assert.Equal(t, ms, at, "1 ms of work")

	at, a = s.attempt(1500 * ms) // in the stall: served when it ends
	assert.Equal(t, answerOK, a)
	assert.Equal(t, 2001*ms, at)

	// 1,000 more in the stall: the k-th is served at 2,001 + k ms, so the
	// first 499 within their second; the others time out, and their work
	// is done anyway.
	var ok, timedOut int
	for range 1000 {
		switch _, a := s.attempt(1500 * ms); a {
		case answerOK:
			ok++
		case answerTimedOut:
			timedOut++
		}
	}
	assert.Equal(t, 499, ok)
	assert.Equal(t, 501, timedOut)
	at, a = s.attempt(2000 * ms)
	assert.Equal(t, answerTimedOut, a, "1,001 ms of work queued before it")
	assert.Equal(t, 3000*ms, at)
	assert.Equal(t, 3002*ms, s.free, "the work of every attempt, the timed-out ones included")
}

func TestServerOutagesAndShedding(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		trigger Trigger
		want    answer
	}{{Unavailable, answer503}, {Drop, answerReset}} {
		c := Config{Capacity: 1000, OutageAt: time.Second, Outage: time.Second, Trigger: tt.trigger, AttemptTimeout: time.Second}
		s := newServer(&c)
		at, a := s.attempt(1500 * ms)
		assert.Equal(t, tt.want, a, tt.trigger)
		assert.Equal(t, 1500*ms, at, "at once")
		assert.Zero(t, s.free, "without work")
	}

	c := Config{Capacity: 1000, OutageAt: time.Hour, Outage: time.Second, Trigger: Stall, Shed: true}
	s := newServer(&c)
	for range 1001 {
		s.attempt(0)
	}
	at, a := s.attempt(0)
	assert.Equal(t, answer429, a, "more than a second of work queued")
	assert.Zero(t, at)
}
