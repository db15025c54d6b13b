// Command upload streams a large body through one library's RoundTripper to
// a loopback server in the same process, then prints the process's peak
// resident memory. The body is a plain io.Reader without GetBody, as from a
// pipe or a file being generated: a library that reads it into memory to
// retry it shows here. BenchmarkStreamUpload runs it once per library.
//
//	upload -lib retryhttp -size 268435456
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp/bench"
)

func main() {
	name := flag.String("lib", "bare", "library to send through")
	size := flag.Int64("size", 256<<20, "bytes to upload")
	flag.Parse()
	lib, ok := bench.Find(*name)
	if !ok {
		fmt.Fprintf(os.Stderr, "upload: unknown -lib %q\n", *name)
		os.Exit(2)
	}
	var received atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		received.Store(n)
	}))
	defer srv.Close()
	base := cleanhttp.DefaultPooledTransport()
	rt := lib.Wrap(base, bench.Happy)

	req, err := http.NewRequest(http.MethodPut, srv.URL, onlyReader{io.LimitReader(zeros{}, *size)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "upload:", err)
		os.Exit(1)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upload:", err)
		os.Exit(1)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || received.Load() != *size {
		fmt.Fprintf(os.Stderr, "upload: status %d, server received %d of %d bytes\n", resp.StatusCode, received.Load(), *size)
		os.Exit(1)
	}
	peak, err := peakRSS()
	if err != nil {
		fmt.Fprintln(os.Stderr, "upload:", err)
		os.Exit(1)
	}
	fmt.Printf("peak-rss-kib %d\n", peak)
}

// peakRSS returns the process's peak resident set size in KiB (VmHWM).
func peakRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			var kib int64
			_, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib)
			return kib, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

// onlyReader hides every method but Read, so that nothing can tell the
// body's length or rewind it.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
