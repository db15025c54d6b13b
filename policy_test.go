package retryhttp

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		fields []string // the fields the error must name; none for a valid policy
	}{
		{"zero value", Policy{}, nil},
		{"all set", Policy{MaxAttempts: 5, BaseDelay: time.Second, MaxDelay: time.Minute, Jitter: NoJitter, MaxRetryAfter: time.Hour}, nil},
		{"MaxDelay equal to BaseDelay", Policy{BaseDelay: time.Second, MaxDelay: time.Second}, nil},
		{"one attempt", Policy{MaxAttempts: 1}, nil},
		{"negative attempts", Policy{MaxAttempts: -1}, []string{"MaxAttempts"}},
		{"negative BaseDelay", Policy{BaseDelay: -1}, []string{"BaseDelay"}},
		{"negative MaxDelay", Policy{MaxDelay: -time.Second}, []string{"MaxDelay"}},
		{"negative MaxRetryAfter", Policy{MaxRetryAfter: -time.Second}, []string{"MaxRetryAfter"}},
		{"MaxDelay below BaseDelay", Policy{BaseDelay: time.Second, MaxDelay: time.Millisecond}, []string{"MaxDelay"}},
		{"BaseDelay above the default MaxDelay", Policy{BaseDelay: time.Minute}, []string{"MaxDelay"}},
		{"unknown Jitter", Policy{Jitter: 7}, []string{"Jitter"}},
		{"negative Jitter", Policy{Jitter: -1}, []string{"Jitter"}},
		{"several at once", Policy{MaxAttempts: -3, Jitter: 9}, []string{"MaxAttempts", "Jitter"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			if tt.fields == nil {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			var perr *PolicyError
			require.ErrorAs(t, err, &perr)
			assert.Equal(t, tt.fields[0], perr.Field)
			for _, f := range tt.fields {
				assert.Contains(t, err.Error(), "retryhttp: invalid Policy."+f+":")
			}
		})
	}
}

func TestDelayNoJitterDoublesUpToTheCap(t *testing.T) {
	p := Policy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second, Jitter: NoJitter}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for n, w := range want {
		assert.Equal(t, w*time.Millisecond, p.Delay(n, 0, nil), "retry %d", n)
	}
	assert.Equal(t, time.Second, p.Delay(math.MaxInt, 0, nil), "no overflow")
	assert.Equal(t, 100*time.Millisecond, p.Delay(-5, 0, nil), "a negative n counts as 0")
}

func TestDelayJitterStaysInItsRange(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	base, limit := 10*time.Millisecond, 500*time.Millisecond
	for n := range 12 {
		temp := min(limit, base<<n)
		for range 200 {
			full := Policy{BaseDelay: base, MaxDelay: limit}.Delay(n, 0, r)
			assert.GreaterOrEqual(t, full, time.Duration(0))
			assert.LessOrEqual(t, full, temp)

			equal := Policy{BaseDelay: base, MaxDelay: limit, Jitter: EqualJitter}.Delay(n, 0, r)
			assert.GreaterOrEqual(t, equal, temp/2)
			assert.LessOrEqual(t, equal, temp)
		}
	}
	prev := time.Duration(0)
	for range 500 {
		d := Policy{BaseDelay: base, MaxDelay: limit, Jitter: DecorrelatedJitter}.Delay(0, prev, r)
		assert.GreaterOrEqual(t, d, base)
		assert.LessOrEqual(t, d, min(limit, 3*max(prev, base)))
		prev = d
	}
}

func TestDelayIsRandomAndSeedable(t *testing.T) {
	p := Policy{BaseDelay: time.Second, MaxDelay: time.Hour}
	seq := func(r *rand.Rand) []time.Duration {
		var out []time.Duration
		for n := range 8 {
			out = append(out, p.Delay(n, 0, r))
		}
		return out
	}
	assert.Equal(t, seq(rand.New(rand.NewPCG(7, 7))), seq(rand.New(rand.NewPCG(7, 7))), "a seed repeats")
	assert.NotEqual(t, seq(nil), seq(nil), "no fixed seed by default")

	// Full jitter is uniform on [0, temp]: the mean of many draws is near temp/2.
	var sum time.Duration
	const draws = 20000
	for range draws {
		sum += p.Delay(0, 0, nil)
	}
	mean := sum / draws
	assert.InDelta(t, float64(time.Second/2), float64(mean), float64(30*time.Millisecond))
}

func TestZeroPolicyUsesTheDefaults(t *testing.T) {
	p := Policy{}.withDefaults()
	assert.Equal(t, Policy{
		MaxAttempts:   DefaultMaxAttempts,
		BaseDelay:     DefaultBaseDelay,
		MaxDelay:      DefaultMaxDelay,
		Jitter:        FullJitter,
		MaxRetryAfter: DefaultMaxRetryAfter,
	}, p)
	assert.Equal(t, DefaultBaseDelay, Policy{Jitter: NoJitter}.Delay(0, 0, nil))
}

func TestJitterNames(t *testing.T) {
	for _, j := range []Jitter{FullJitter, EqualJitter, DecorrelatedJitter, NoJitter} {
		got, err := ParseJitter(j.String())
		require.NoError(t, err)
		assert.Equal(t, j, got)
	}
	assert.Equal(t, "Jitter(9)", Jitter(9).String())
	_, err := ParseJitter("random")
	assert.ErrorContains(t, err, `unknown jitter "random"`)
}

// FuzzDelay checks that Delay, for any Policy at all and any retry number,
// never panics and returns a wait in [0, MaxDelay] (after defaults).
func FuzzDelay(f *testing.F) {
	f.Add(0, int64(0), int64(0), 0, 0, int64(0))
	f.Add(3, int64(time.Second), int64(time.Minute), 2, 5, int64(time.Second))
	f.Add(-1, int64(-1), int64(math.MaxInt64), 3, math.MaxInt, int64(math.MaxInt64))
	f.Add(1, int64(math.MaxInt64), int64(1), -1, 62, int64(-5))
	f.Fuzz(func(t *testing.T, attempts int, base, limit int64, jitter int, n int, prev int64) {
		p := Policy{MaxAttempts: attempts, BaseDelay: time.Duration(base), MaxDelay: time.Duration(limit), Jitter: Jitter(jitter)}
		d := p.Delay(n, time.Duration(prev), nil)
		s := p.sane()
		if d < 0 || d > s.MaxDelay {
			t.Fatalf("Delay(%d, %d) = %v for %+v: outside [0, %v]", n, prev, d, p, s.MaxDelay)
		}
	})
}

func TestDecorrelatedJitterFollowsTheFormula(t *testing.T) {
	// min(MaxDelay, uniform in [BaseDelay, 3·prev]): with prev 15 s and a
	// 20 s cap, uniform in [0.1 s, 45 s] lands past the cap 56% of the time,
	// and then the wait is the cap itself.
	p := Policy{BaseDelay: 100 * time.Millisecond, MaxDelay: 20 * time.Second, Jitter: DecorrelatedJitter}
	r := rand.New(rand.NewPCG(3, 4))
	atCap := 0
	const draws = 4000
	for range draws {
		d := p.Delay(5, 15*time.Second, r)
		require.GreaterOrEqual(t, d, p.BaseDelay)
		require.LessOrEqual(t, d, p.MaxDelay)
		if d == p.MaxDelay {
			atCap++
		}
	}
	assert.InDelta(t, 24.9/44.9, float64(atCap)/draws, 0.03)
	assert.Equal(t, 20*time.Second, p.Delay(0, math.MaxInt64, r), "no overflow for a huge previous wait")
}
