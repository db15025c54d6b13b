package retryhttp

import (
	"math"
	"net/http"
	"time"
)

// The forms of the values of the signals' fields (signals.go): plain
// integers, durations, times; each read strictly, and a malformed value is
// no value.

// readReset returns the Reset field name of h, in form, as a duration from
// now: 0 when it is in the past, saturated when too large.
func readReset(h http.Header, name string, form resetForm, now time.Time) (time.Duration, bool) {
	switch form {
	case resetDuration:
		v, ok := oneLine(h, name)
		if !ok {
			return 0, false
		}
		return parseDuration(v)
	case resetTime:
		v, ok := oneLine(h, name)
		if !ok {
			return 0, false
		}
		t, err := time.Parse(time.RFC3339, trimOWS(v))
		if err != nil {
			return 0, false
		}
		return max(0, t.Sub(now)), true
	}
	t, ok := plainInt(h, name)
	if !ok {
		return 0, false
	}
	if form == resetEpoch && t >= epochSeconds {
		return max(0, time.Unix(min(t, math.MaxInt64/int64(time.Second)/2), 0).Sub(now)), true
	}
	return scaled(t, time.Second), true
}

// oneLine returns the field name of h when it is on one field line: a
// single-valued field sent on several lines is malformed.
func oneLine(h http.Header, name string) (string, bool) {
	v, ok := h[name]
	if !ok || len(v) != 1 {
		return "", false
	}
	return v[0], true
}

// plainInt returns the field name of h as a plain non-negative integer:
// decimal digits only, around optional white space, on one field line (two
// lines make "1, 30", which is not one). A number too large saturates.
func plainInt(h http.Header, name string) (int64, bool) {
	v, ok := oneLine(h, name)
	if !ok {
		return 0, false
	}
	s := trimOWS(v)
	if s == "" || !isDigits(s) {
		return 0, false
	}
	return digitsValue(s), true
}

// digitsValue returns the decimal digits s as a number, saturated.
func digitsValue(s string) int64 {
	var n int64
	for i := 0; i < len(s); i++ {
		if n > (math.MaxInt64-9)/10 {
			return math.MaxInt64
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n
}

// nonNegative returns a structured-field parameter that is a non-negative
// Integer.
func nonNegative(v any, ok bool) (int64, bool) {
	n, isInt := v.(int64)
	return n, ok && isInt && n >= 0
}

// scaled returns n units without overflowing.
func scaled(n int64, unit time.Duration) time.Duration {
	if n > math.MaxInt64/int64(unit) {
		return math.MaxInt64
	}
	return time.Duration(n) * unit
}

// parseDuration reads a duration as OpenAI writes its resets, in the form
// of time.ParseDuration: "0", or decimal numbers, each with an optional
// fraction and a unit (ns, us, µs, ms, s, m, h), such as 12ms, 6m0s, 1m30s
// or 0.5s; around optional white space. It has no sign: a negative reset is
// malformed. A duration too long saturates, where time.ParseDuration fails.
func parseDuration(v string) (time.Duration, bool) {
	s := trimOWS(v)
	if s == "0" {
		return 0, true
	}
	if s == "" {
		return 0, false
	}
	var d time.Duration
	for s != "" {
		i := 0
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		whole := s[:i]
		frac := ""
		if i < len(s) && s[i] == '.' {
			j := i + 1
			for j < len(s) && '0' <= s[j] && s[j] <= '9' {
				j++
			}
			frac, i = s[i+1:j], j
		}
		if whole == "" && frac == "" {
			return 0, false
		}
		j := i
		for j < len(s) && s[j] != '.' && (s[j] < '0' || s[j] > '9') {
			j++
		}
		unit, ok := durationUnit(s[i:j])
		if !ok {
			return 0, false
		}
		s = s[j:]
		d = addSat(d, durationPart(whole, frac, unit))
	}
	return d, true
}

// durationUnit returns the length of a unit of time.ParseDuration.
func durationUnit(u string) (time.Duration, bool) {
	switch u {
	case "ns":
		return time.Nanosecond, true
	case "us", "µs", "μs": // U+00B5 and U+03BC, as time.ParseDuration
		return time.Microsecond, true
	case "ms":
		return time.Millisecond, true
	case "s":
		return time.Second, true
	case "m":
		return time.Minute, true
	case "h":
		return time.Hour, true
	}
	return 0, false
}

// durationPart returns whole.frac units, saturated. The fraction is
// rounded as time.ParseDuration rounds it, so that both agree whenever it
// does not fail.
func durationPart(whole, frac string, unit time.Duration) time.Duration {
	d := scaled(digitsValue(whole), unit)
	var f uint64
	scale := 1.0
	for i := 0; i < len(frac); i++ {
		y := f*10 + uint64(frac[i]-'0')
		if f > (1<<63-1)/10 || y > 1<<63 {
			break // the digits past 2⁶³ are dropped, as time.ParseDuration drops them
		}
		f, scale = y, scale*10
	}
	return addSat(d, time.Duration(float64(f)*(float64(unit)/scale)))
}

// addSat returns a+b, both non-negative, saturated.
func addSat(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
