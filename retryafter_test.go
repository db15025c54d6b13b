package retryhttp

import (
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{"  5 ", 5 * time.Second, true},
		{"007", 7 * time.Second, true},
		{"9223372036", 9223372036 * time.Second, true},
		{"9223372037", math.MaxInt64, true}, // saturates
		{"99999999999999999999999999", math.MaxInt64, true},
		{"Fri, 27 Nov 2026 12:01:00 GMT", time.Minute, true},       // IMF-fixdate
		{"Friday, 27-Nov-26 12:00:30 GMT", 30 * time.Second, true}, // RFC 850
		{"Fri Nov 27 12:00:10 2026", 10 * time.Second, true},       // asctime
		{"Fri, 27 Nov 2026 11:00:00 GMT", 0, true},                 // in the past
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1.5", 0, false},
		{"1e3", 0, false},
		{"soon", 0, false},
		{"0x10", 0, false},
		{"Fri, 27 Nov 2026 12:01:00", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parseRetryAfter(tt.in, now)
			assert.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestRetryAfterWaitBounds(t *testing.T) {
	tests := []struct {
		asked, base, max time.Duration
	}{
		{0, 100 * time.Millisecond, 100 * time.Millisecond},
		{time.Second, 100 * time.Millisecond, 1100 * time.Millisecond},
		{time.Minute, 100 * time.Millisecond, 66 * time.Second},
		{time.Second, time.Minute, 2 * time.Second}, // a large BaseDelay adds at most 1s
		{math.MaxInt64, time.Second, math.MaxInt64},
	}
	for _, tt := range tests {
		for range 100 {
			w := retryAfterWait(tt.asked, tt.base, nil)
			assert.GreaterOrEqual(t, w, tt.asked)
			assert.LessOrEqual(t, w, tt.max)
		}
	}
}

// FuzzParseRetryAfter checks that any header value parses without a panic
// into a wait that is never negative, and that the valid forms round-trip.
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"0", "120", "Fri, 27 Nov 2026 12:01:00 GMT", "Friday, 27-Nov-26 12:00:30 GMT",
		"Fri Nov 27 12:00:10 2026", "", "-1", "1.5", "99999999999999999999", " 3 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseRetryAfter(s, now)
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v: negative", s, d)
		}
		if !ok && d != 0 {
			t.Fatalf("parseRetryAfter(%q) = %v with ok false", s, d)
		}
		if ok {
			if _, err := http.ParseTime(trimOWS(s)); err != nil && !isDigits(trimOWS(s)) {
				t.Fatalf("parseRetryAfter(%q) accepted a value of neither form", s)
			}
		}
		w := retryAfterWait(d, DefaultBaseDelay, nil)
		if w < d {
			t.Fatalf("retryAfterWait(%v) = %v: shorter than asked", d, w)
		}
	})
}
