package rawhttp

// A raw HTTP/1 server: a handler gets the connection itself.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// h1Server accepts TCP connections and hands each request (request line and
// headers read, body not read) to handle, which does what it wants with the
// connection. It counts the requests whose head reached it.
type H1Server struct {
	ln       net.Listener
	URL      string
	Requests atomic.Int32
	Conns    atomic.Int32
	handle   func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) (keepAlive bool)
	wg       sync.WaitGroup
	mu       sync.Mutex
	open     map[net.Conn]bool
}

func NewH1Server(t *testing.T, handle func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool) *H1Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &H1Server{ln: ln, URL: "http://" + ln.Addr().String() + "/", handle: handle, open: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.Conns.Add(1)
			s.mu.Lock()
			s.open[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.open, c)
					s.mu.Unlock()
				}()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					n := int(s.Requests.Add(1))
					if !s.handle(n, c.(*net.TCPConn), br, r) {
						return
					}
				}
			}()
		}
	}()
	return s
}

// reset closes c with an RST.
func Reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

func WriteResponse(c net.Conn, code int, headers string, body string) {
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n%s\r\n%s", code, http.StatusText(code), len(body), headers, body)
}
