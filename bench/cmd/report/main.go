// Command report turns the output of `go test -bench` in this module into a
// markdown table: for each benchmark and library, the median of each unit
// over the -count runs and, in brackets, the median over the runs of its
// ratio to the bare row of the same run (the k-th sample of a row and the
// k-th of bare come from the same pass over the rows).
//
//	go run ./cmd/report < results.txt > results.md
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// line matches "BenchmarkName/lib=NAME-2   123   456 ns/op   7 B/op ...".
var line = regexp.MustCompile(`^Benchmark(\w+)/lib=([\w+-]+?)(?:-\d+)?\s+\d+\s+(.*)$`)

type key struct{ bench, lib string }

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	samples := map[key]map[string][]float64{}
	var benches, libs []string
	var header []string
	s := bufio.NewScanner(in)
	for s.Scan() {
		text := s.Text()
		for _, p := range []string{"goos:", "goarch:", "cpu:"} {
			if strings.HasPrefix(text, p) && !slices.Contains(header, text) {
				header = append(header, text)
			}
		}
		m := line.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		k := key{m[1], m[2]}
		if !slices.Contains(benches, k.bench) {
			benches = append(benches, k.bench)
		}
		if !slices.Contains(libs, k.lib) {
			libs = append(libs, k.lib)
		}
		if samples[k] == nil {
			samples[k] = map[string][]float64{}
		}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			samples[k][f[i+1]] = append(samples[k][f[i+1]], v)
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	if len(samples) == 0 {
		return fmt.Errorf("no benchmark results on standard input")
	}
	order := []string{"bare", "retryhttp", "retryhttp+metrics", "retryhttp+seam", "retryhttp+hedging", "retryhttp+adaptive", "retryablehttp", "failsafehttp", "rehttp", "promhttp-counter"}
	sort.SliceStable(libs, func(i, j int) bool { return rank(order, libs[i]) < rank(order, libs[j]) })

	fmt.Fprintf(out, "%s\n\n", strings.Join(header, "; "))
	for _, b := range benches {
		units := unitsOf(samples, b, libs)
		note := "; in brackets, the median ratio to bare in the same run"
		if _, ok := samples[key{b, "bare"}]; !ok {
			note = ""
		}
		fmt.Fprintf(out, "**%s** (median of %d runs%s)\n\n", b, runs(samples, b, libs), note)
		fmt.Fprintf(out, "| library |")
		for _, u := range units {
			fmt.Fprintf(out, " %s |", u)
		}
		fmt.Fprintf(out, "\n|---|%s\n", strings.Repeat("---|", len(units)))
		for _, l := range libs {
			got, ok := samples[key{b, l}]
			if !ok {
				continue
			}
			fmt.Fprintf(out, "| %s |", l)
			for _, u := range units {
				v, ok := median(got[u])
				if !ok {
					fmt.Fprint(out, " |")
					continue
				}
				cell := format(v, u)
				if ratio, ok := median(ratios(got[u], samples[key{b, "bare"}][u])); ok && l != "bare" {
					cell += fmt.Sprintf(" (%.2f×)", ratio)
				}
				fmt.Fprintf(out, " %s |", cell)
			}
			fmt.Fprintln(out)
		}
		fmt.Fprintln(out)
	}
	return nil
}

func rank(order []string, lib string) int {
	if i := slices.Index(order, lib); i >= 0 {
		return i
	}
	return len(order)
}

func unitsOf(samples map[key]map[string][]float64, bench string, libs []string) []string {
	var units []string
	for _, l := range libs {
		for u := range samples[key{bench, l}] {
			if !slices.Contains(units, u) && u != "MB/s" {
				units = append(units, u)
			}
		}
	}
	pref := []string{"ns/op", "B/op", "allocs/op", "conns/op", "peak-RSS-MiB"}
	sort.SliceStable(units, func(i, j int) bool { return rank(pref, units[i]) < rank(pref, units[j]) })
	return units
}

func runs(samples map[key]map[string][]float64, bench string, libs []string) int {
	n := 0
	for _, l := range libs {
		n = max(n, len(samples[key{bench, l}]["ns/op"]))
	}
	return n
}

// ratios returns v[k]/base[k] for each run k that has both.
func ratios(v, base []float64) []float64 {
	var out []float64
	for k := range min(len(v), len(base)) {
		if base[k] > 0 {
			out = append(out, v[k]/base[k])
		}
	}
	return out
}

func median(v []float64) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

func format(v float64, unit string) string {
	switch unit {
	case "ns/op":
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2f ms", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.2f µs", v/1e3)
		}
		return fmt.Sprintf("%.0f ns", v)
	case "B/op":
		switch {
		case v >= 1<<20:
			return fmt.Sprintf("%.2f MiB", v/(1<<20))
		case v >= 1<<10:
			return fmt.Sprintf("%.1f KiB", v/(1<<10))
		}
		return fmt.Sprintf("%.0f B", v)
	case "conns/op":
		return fmt.Sprintf("%.3f", v)
	case "peak-RSS-MiB":
		return fmt.Sprintf("%.1f MiB", v)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
