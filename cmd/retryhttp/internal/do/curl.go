package do

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/cli"
)

// curl's habits: a script's curl line works with "curl" replaced by
// "retryhttp do". Before the flag package parses the arguments, curlArgs
// expands bundles of short flags (-fsSL), turns curl's names into do's
// (--output into -o), drops the flags do accepts because it already
// behaves as they ask (-f, -s, -L...), and refuses, naming what to use
// instead, the curl flags do does not support. docs/do-curl-flags.md
// tells what do does with each of curl's common flags.

// curlFlag is one of curl's flags that is not one of do's own by name.
type curlFlag struct {
	short, long string // curl's names, without dashes; "" when it has none
	to          string // the do flag it stands for; "" when do ignores it or lacks it
	note        string // ignored: why; not supported: what to use instead
	unsupported bool
}

// curlFlags are curl's flags that do knows by another name, accepts and
// ignores, or does not support.
var curlFlags = []curlFlag{
	// curl's names for do's flags.
	{short: "X", long: "request", to: "X"},
	{short: "H", long: "header", to: "H"},
	{short: "d", long: "data", to: "d"},
	{long: "data-ascii", to: "d"},
	{short: "i", long: "include", to: "i"},
	{short: "I", long: "head", to: "I"},
	{short: "u", long: "user", to: "u"},
	{short: "w", long: "write-out", to: "w"},
	{short: "v", long: "verbose", to: "v"},
	{short: "o", long: "output", to: "o"},
	{short: "m", long: "max-time", to: "timeout"},
	{long: "max-redirs", to: "max-redirects"},
	{short: "k", long: "insecure", to: "k"},
	{short: "A", long: "user-agent", to: "A"},

	// Accepted and ignored: do already behaves so.
	{short: "f", long: "fail", note: "a status of 400 or more is a failure (exit 22) whose body is not printed"},
	{short: "s", long: "silent", note: "do shows no progress meter; the failure line still goes to standard error"},
	{short: "S", long: "show-error", note: "the failure line goes to standard error"},
	{short: "L", long: "location", note: "redirects are followed, up to -max-redirects"},
	{long: "compressed", note: "gzip is asked for and decompressed unless -H sets Accept-Encoding"},
	{long: "retry-connrefused", note: "refused connections are retried"},
	{long: "retry-all-errors", note: "every error a retry may fix is retried, when resending is safe"},
	{short: "g", long: "globoff", note: "do never expands {} or [] in the URL"},
	{short: "N", long: "no-buffer", note: "the body is written as it comes"},
	{long: "no-progress-meter", note: "do shows no progress meter"},

	// Not supported: the usage error says what to use instead.
	{short: "b", long: "cookie", note: "use -H 'Cookie: name=value'", unsupported: true},
	{short: "c", long: "cookie-jar", note: "do keeps no cookies; read Set-Cookie with -i", unsupported: true},
	{short: "e", long: "referer", note: "use -H 'Referer: URL'", unsupported: true},
	{short: "F", long: "form", note: "build the multipart body in a file and send it with --data-binary @file and -H 'Content-Type: multipart/form-data; boundary=...'", unsupported: true},
	{short: "G", long: "get", note: "put the data in the URL's query string", unsupported: true},
	{short: "T", long: "upload-file", note: "use -X PUT --data-binary @file", unsupported: true},
	{short: "O", long: "remote-name", note: "use -o with the file's name", unsupported: true},
	{short: "J", long: "remote-header-name", note: "use -o with the file's name", unsupported: true},
	{short: "D", long: "dump-header", note: "use -i, which prints the headers before the body", unsupported: true},
	{short: "r", long: "range", note: "use -H 'Range: bytes=START-END'", unsupported: true},
	{short: "C", long: "continue-at", note: "do sends the request again from the start; -o replaces the file whole", unsupported: true},
	{short: "x", long: "proxy", note: "set the HTTPS_PROXY or HTTP_PROXY environment variable", unsupported: true},
	{long: "noproxy", note: "set the NO_PROXY environment variable", unsupported: true},
	{short: "n", long: "netrc", note: "use -u user:password", unsupported: true},
	{long: "oauth2-bearer", note: "use -H 'Authorization: Bearer TOKEN'", unsupported: true},
	{long: "digest", note: "do has only basic authentication (-u)", unsupported: true},
	{short: "E", long: "cert", note: "do has no client certificates", unsupported: true},
	{long: "key", note: "do has no client certificates", unsupported: true},
	{long: "capath", note: "use -cacert with a PEM file", unsupported: true},
	{long: "data-urlencode", note: "use -d with the value already URL-encoded", unsupported: true},
	{long: "fail-with-body", note: "use -error-body, which prints a failure's body to standard error", unsupported: true},
	{long: "resolve", note: "put the address in the URL and the name in -H 'Host: NAME'", unsupported: true},
	{long: "connect-to", note: "put the address in the URL and the name in -H 'Host: NAME'", unsupported: true},
	{long: "http1.1", note: "do uses HTTP/2 over TLS when the server offers it, HTTP/1.1 otherwise", unsupported: true},
	{long: "http2", note: "do uses HTTP/2 over TLS when the server offers it, HTTP/1.1 otherwise", unsupported: true},
	{short: "4", long: "ipv4", note: "put an IPv4 address in the URL", unsupported: true},
	{short: "6", long: "ipv6", note: "put an IPv6 address in the URL", unsupported: true},
	{long: "limit-rate", note: "do does not limit its speed", unsupported: true},
	{short: "Y", long: "speed-limit", note: "use -m to bound the whole request", unsupported: true},
	{short: "y", long: "speed-time", note: "use -m to bound the whole request", unsupported: true},
	{short: "#", long: "progress-bar", note: "drop it: do shows no progress", unsupported: true},
	{long: "trace", note: "use -v, which prints each attempt", unsupported: true},
	{long: "trace-ascii", note: "use -v, which prints each attempt", unsupported: true},
	{long: "url", note: "give the URL as an argument", unsupported: true},
	{short: "K", long: "config", note: "give the flags on the command line", unsupported: true},
	{short: "Z", long: "parallel", note: "run one retryhttp do per URL", unsupported: true},
	{long: "create-dirs", note: "create the folder first (mkdir -p)", unsupported: true},
}

// curlNamed finds a curl flag by one of its names (without dashes).
func curlNamed(name string) (curlFlag, bool) {
	for _, c := range curlFlags {
		if name != "" && (name == c.short || name == c.long) {
			return c, true
		}
	}
	return curlFlag{}, false
}

// names returns the flag's names as curl writes them: "-f/--fail".
func (c curlFlag) names() string {
	switch {
	case c.short == "":
		return "--" + c.long
	case c.long == "":
		return "-" + c.short
	}
	return "-" + c.short + "/--" + c.long
}

// curlArgs rewrites args so that the flag package takes curl's habits:
//
//   - a bundle of short flags is one flag each: -fsSL is -f -s -S -L, and
//     the last one may take a value, the next argument (-fsSLo out); a
//     single letter that takes a value may have it attached (-XPOST,
//     -ofile, -dname=value), as in curl;
//   - curl's long names become do's (--output is -o, --max-time -timeout);
//     both one and two dashes are taken, as the flag package takes them;
//   - the flags do already behaves as are dropped (-f, -s, -S, -L, ...).
//
// A flag's value and the arguments after "--" are never rewritten; a
// token it does not recognize is left as it is, for the flag package to
// report. It returns an error naming a curl flag do does not support, with
// what to use instead.
func curlArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...), nil
		}
		if len(a) < 2 || a[0] != '-' { // the URL, or "-"
			out = append(out, a)
			continue
		}
		flags, takesNext, err := curlFlagArgs(fs, a)
		if err != nil {
			return nil, err
		}
		out = append(out, flags...)
		if takesNext && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out, nil
}

// curlFlagArgs rewrites one argument that starts with a dash into do's
// flags, and says whether the last of them takes the next argument.
func curlFlagArgs(fs *flag.FlagSet, a string) (flags []string, takesNext bool, err error) {
	dashes := "-"
	body := a[1:]
	if body[0] == '-' {
		dashes, body = "--", body[1:]
	}
	name, value, hasValue := strings.Cut(body, "=")
	to, known, err := resolveFlag(fs, name)
	if err != nil {
		return nil, false, err
	}
	if known {
		if to == "" { // accepted, ignored
			return nil, false, nil
		}
		if to == name {
			return []string{a}, !hasValue && !isBoolFlag(fs.Lookup(to)), nil
		}
		if hasValue {
			return []string{"-" + to + "=" + value}, false, nil
		}
		return []string{"-" + to}, !isBoolFlag(fs.Lookup(to)), nil
	}
	if dashes == "-" && len(body) > 1 {
		if flags, takesNext, ok, err := expandBundle(fs, body); ok || err != nil {
			return flags, takesNext, err
		}
	}
	return []string{a}, false, nil // for the flag package to report
}

// expandBundle expands a bundle of short flags (body is the argument
// without its dash): every letter but the last is a flag that takes no
// value, and the last may take one, which is the next argument; or the
// bundle is one letter that takes a value followed by the value (-XPOST).
// ok is false when body is not such a bundle (a mistyped long name, say);
// a bundle with a curl flag do does not support is an error.
func expandBundle(fs *flag.FlagSet, body string) (flags []string, takesNext, ok bool, err error) {
	var unsupported error
letters:
	for i := 0; i < len(body); i++ {
		to, known, err := resolveFlag(fs, body[i:i+1])
		switch {
		case err != nil:
			unsupported = cmp.Or(unsupported, err)
			continue
		case !known:
			return nil, false, false, nil
		case to == "":
			continue
		}
		flags = append(flags, "-"+to)
		if isBoolFlag(fs.Lookup(to)) {
			continue
		}
		switch {
		case i == len(body)-1:
			takesNext = true
		case i == 0: // -XPOST, -ofile
			flags = append(flags, body[1:])
		default: // a value in the middle: -fofile
			return nil, false, false, nil
		}
		break letters
	}
	if unsupported != nil {
		return nil, false, false, fmt.Errorf("%w (in -%s)", unsupported, body)
	}
	return flags, takesNext, true, nil
}

// errUnsupported is the error for a curl flag that do does not support.
var errUnsupported = errors.New("not supported by retryhttp do")

// resolveFlag returns the do flag that name (without dashes) stands for:
// itself when it is one of do's, "" for a curl flag do ignores; known is
// false for a name neither do nor the table knows. A curl flag do does
// not support is an error.
func resolveFlag(fs *flag.FlagSet, name string) (to string, known bool, err error) {
	if fs.Lookup(name) != nil {
		return name, true, nil
	}
	c, ok := curlNamed(name)
	switch {
	case !ok:
		return "", false, nil
	case c.unsupported:
		return "", false, fmt.Errorf("curl's %s is %w: %s", c.names(), errUnsupported, c.note)
	}
	return c.to, true, nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// retried reports whether --retry set the attempts, for messages.
func (f *doFlags) retried() bool { return f.retryGiven }

// curlHelp is the part of do -h about curl's flags.
func curlHelp() string {
	var names, accepted, unsupported []string
	for _, c := range curlFlags {
		switch {
		case c.unsupported:
			unsupported = append(unsupported, c.names())
		case c.to == "":
			accepted = append(accepted, c.names())
		case c.short != "" && c.short != c.to:
			names = append(names, c.names()+" -"+c.to)
		default:
			names = append(names, "--"+c.long+" -"+c.to)
		}
	}
	var b strings.Builder
	b.WriteString("curl's flags (docs/do-curl-flags.md tells what do does with each):\n")
	b.WriteString(wrap("  ", "Short flags may be bundled (-fsSL, -sSo FILE, -XPOST); --name is -name.") + "\n")
	b.WriteString(wrap("  ", "curl's names: "+strings.Join(names, ", ")+".") + "\n")
	b.WriteString(wrap("  ", "Accepted, as do already behaves so: "+strings.Join(accepted, ", ")+".") + "\n")
	b.WriteString(wrap("  ", "Not supported (the error says what to use instead): "+strings.Join(unsupported, ", ")+"."))
	return b.String()
}

// wrap breaks s into lines of at most 76 columns, each beginning with
// indent.
func wrap(indent, s string) string {
	var lines []string
	line := indent
	for _, word := range strings.Fields(s) {
		if len(line) > len(indent) && len(line)+1+len(word) > 76 {
			lines = append(lines, line)
			line = indent + "  "
		} else if len(line) > len(indent) && !strings.HasSuffix(line, " ") {
			line += " "
		}
		line += word
	}
	return strings.Join(append(lines, line), "\n")
}

// retryFlag is curl's --retry N: N retries, N+1 attempts.
type retryFlag struct {
	attempts *int
	given    *bool
}

func (r retryFlag) String() string {
	if r.attempts == nil {
		return ""
	}
	return strconv.Itoa(*r.attempts - 1)
}

func (r retryFlag) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1<<20 {
		return fmt.Errorf("%q is not a number of retries (0 or more)", v)
	}
	*r.attempts, *r.given = n+1, true
	return nil
}

// retryDelayFlag is curl's --retry-delay: the first wait, which then
// doubles (with jitter) as -base-delay's does; 0 keeps do's default, as
// curl's 0 keeps its own backoff.
type retryDelayFlag struct{ base *time.Duration }

func (r retryDelayFlag) String() string { return "" }

func (r retryDelayFlag) Set(v string) error {
	var s cli.Seconds
	if err := s.Set(v); err != nil {
		return err
	}
	*r.base = time.Duration(s)
	if s == 0 {
		*r.base = DefaultBaseDelay
	}
	return nil
}

// dataArg is one -d or --data-raw.
type dataArg struct {
	text string
	raw  bool // --data-raw: no @file, and sent as given
}

// dataFlag collects -d (raw false) or --data-raw (raw true) into the
// same list, in the order given, as curl joins them.
type dataFlag struct {
	list *[]dataArg
	raw  bool
}

func (d dataFlag) String() string { return "" }

func (d dataFlag) Set(v string) error {
	*d.list = append(*d.list, dataArg{text: v, raw: d.raw})
	return nil
}
