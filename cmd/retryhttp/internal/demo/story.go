package demo

import (
	"fmt"
	"strings"
)

// story returns the sentences that end the summary: what each phase
// showed, in the numbers the metrics counted.
func (r report) story() []string {
	var lines []string
	for _, p := range r.phases {
		if p.total == 0 {
			continue
		}
		if p.name == "outage" {
			lines = append(lines, r.outageStory(p))
		} else {
			lines = append(lines, r.failuresStory(p))
		}
	}
	if line := r.giveUpsStory(); line != "" {
		lines = append(lines, line)
	}
	if s := r.total; s.resends > 0 && s.total > 0 {
		lines = append(lines, fmt.Sprintf("net/http also sent %s again on its own, when a reused connection was reset "+
			"(retryhttp_transparent_retries_total): the upstream received %d attempts, %.2f per request.",
			counted(s.resends, "attempt", "attempts"), int(s.allAttempt+s.resends), (s.allAttempt+s.resends)/s.total))
	}
	return lines
}

// failuresStory tells what retries made of the transient failures of a
// phase.
func (r report) failuresStory(p phaseResult) string {
	where := "In the " + p.name + " phase"
	switch p.name {
	case "":
		where = "Over the run"
	case "recovery":
		where = "In recovery"
	}
	ended := "every request ended ok"
	if p.requests["ok"] < p.total {
		ended = fmt.Sprintf("%s of requests ended ok (%s)", share(p.requests["ok"], p.total), p.failures())
	}
	refused := "the budget refused no retry"
	switch {
	case !r.budget:
		refused = "there was no retry budget"
	case p.refusals > 0:
		refused = "the budget refused " + counted(p.refusals, "retry", "retries")
	}
	return fmt.Sprintf("%s %s failed; with retries %s, at %.2f attempts per request; %s.",
		where, p.failedShare(), ended, p.amplification(), refused)
}

// outageStory tells what the budget did in the outage, against what the
// retries would have done without it.
func (r report) outageStory(p phaseResult) string {
	failed := "In the outage every attempt failed"
	if n := p.allAttempt - p.failedAttempts(); n > 0 {
		// The outage answers nothing but 503: the others were answered
		// before it began, and counted after.
		failed = fmt.Sprintf("In the outage all but %d of %d attempts failed (%s under way when it began)",
			int(n), int(p.allAttempt), ifOne(n, "that one was", "those were"))
	}
	switch {
	case r.maxAttempts == 1:
		return failed + "; with -attempts 1 nothing was retried, so the upstream got one attempt per request."
	case !r.budget:
		return fmt.Sprintf("%s and, with no retry budget (-budget=false), each request made %.2f attempts (of at most %d): "+
			"%d attempts for %d requests. The demo's clients wait for each answer, so waiting out the retries also slowed them down; "+
			"requests that keep arriving, as users' do, would each bring %d attempts to the failing upstream.",
			failed, p.amplification(), r.maxAttempts, int(p.allAttempt), int(p.total), r.maxAttempts)
	}
	if p.refusals == 0 {
		// Little traffic: the budget's floor of retries per second let
		// every retry through, so it held nothing back.
		return fmt.Sprintf("%s and each request made %.2f attempts (of at most %d): %d attempts for %d requests. "+
			"The retry budget refused nothing: its floor of retries per second covered this little traffic; "+
			"it holds back retries when many requests fail at once.",
			failed, p.amplification(), r.maxAttempts, int(p.allAttempt), int(p.total))
	}
	return fmt.Sprintf("%s; the retry budget refused %s and held the load at %.2f× (%d attempts for %d requests). "+
		"Without a budget, each request would have made all %d attempts: %d×, %d attempts for these %d requests.",
		failed, counted(p.refusals, "retry", "retries"), p.amplification(), int(p.allAttempt), int(p.total),
		r.maxAttempts, r.maxAttempts, r.maxAttempts*int(p.total), int(p.total))
}

// giveUpsStory tells where the give-ups of a run with an outage happened:
// the give-up ratio of the whole run hides that they are the outage's.
func (r report) giveUpsStory() string {
	var outage *phaseResult
	var others []string
	var ok, requests float64 // in the other phases
	for i, p := range r.phases {
		if p.name == "outage" {
			outage = &r.phases[i]
			continue
		}
		others = append(others, p.name)
		ok += p.requests["ok"]
		requests += p.total
	}
	all := r.total.giveUps()
	if outage == nil || all == 0 {
		return ""
	}
	line := fmt.Sprintf("Of the %s above (the give-up ratio of %s), %d %s in the outage, where no retry could succeed",
		counted(all, "give-up", "give-ups"), pct(all, r.total.total), int(outage.giveUps()), ifOne(outage.giveUps(), "was", "were"))
	if requests == 0 {
		return line + "."
	}
	return fmt.Sprintf("%s; in the %s %s %s of requests ended ok.", line,
		strings.Join(others, " and "), ifOne(float64(len(others)), "phase", "phases"), share(ok, requests))
}

// failedShare says how many of the attempts failed, in words.
func (s stats) failedShare() string {
	failed := s.failedAttempts()
	if failed == s.allAttempt {
		return "every attempt"
	}
	return share(failed, s.allAttempt) + " of attempts"
}

// failures lists the outcomes other than ok, with their counts.
func (s stats) failures() string {
	var parts []string
	for _, o := range outcomeOrder[1:] {
		if n := s.requests[o]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", int(n), o))
		}
	}
	return strings.Join(parts, ", ")
}

// counted formats n with the noun for one or for many.
func counted(n float64, one, many string) string {
	return fmt.Sprintf("%d %s", int(n), ifOne(n, one, many))
}

// ifOne returns one when n is 1, and many otherwise.
func ifOne(n float64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
