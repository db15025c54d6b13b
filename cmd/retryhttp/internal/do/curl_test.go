package do

import (
	"errors"
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func doFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("do", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f doFlags
	f.register(fs)
	return fs
}

func TestCurlArgs(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"bundle of flags without a value", []string{"-fsSL", "u"}, []string{"u"}},
		{"bundle ending with a flag that takes the next argument", []string{"-fsSLo", "out", "u"}, []string{"-o", "out", "u"}},
		{"bundle of do's own flags", []string{"-sSiv", "u"}, []string{"-i", "-v", "u"}},
		{"bundle with -k", []string{"-skL", "u"}, []string{"-k", "u"}},
		{"attached value", []string{"-XPOST", "-ofile", "-dname=value", "u"}, []string{"-X", "POST", "-o", "file", "-d", "name=value", "u"}},
		{"-m is -timeout", []string{"-m", "5", "u"}, []string{"-timeout", "5", "u"}},
		{"-m in a bundle", []string{"-sm", "5", "u"}, []string{"-timeout", "5", "u"}},
		{"curl's long names", []string{"--output", "o", "--max-time=5", "--max-redirs", "3", "--insecure", "u"},
			[]string{"-o", "o", "-timeout=5", "-max-redirects", "3", "-k", "u"}},
		{"curl's long names with one dash", []string{"-output", "o", "u"}, []string{"-o", "o", "u"}},
		{"accepted flags are dropped", []string{"--fail", "--silent", "--show-error", "--location", "--compressed", "--retry-connrefused", "--retry-all-errors", "u"}, []string{"u"}},
		{"do's own flags are kept as given", []string{"--retry", "5", "-attempts=3", "-data-binary", "@f", "--connect-timeout", "2", "u"},
			[]string{"--retry", "5", "-attempts=3", "-data-binary", "@f", "--connect-timeout", "2", "u"}},
		{"values are not rewritten", []string{"-H", "-fsS", "-d", "--fail", "-o", "-", "u"}, []string{"-H", "-fsS", "-d", "--fail", "-o", "-", "u"}},
		{"flags after the URL", []string{"u", "-fsS", "--output", "o"}, []string{"u", "-o", "o"}},
		{"nothing after -- is rewritten", []string{"-s", "--", "-fsS"}, []string{"--", "-fsS"}},
		{"a mistyped long name is left for the flag package", []string{"-idempotency", "auto", "u"}, []string{"-idempotency", "auto", "u"}},
		{"an unknown name is left for the flag package", []string{"-frobnicate", "--nope", "u"}, []string{"-frobnicate", "--nope", "u"}},
		{"a value in the middle of a bundle is not a bundle", []string{"-sofile", "u"}, []string{"-sofile", "u"}},
		{"-h is the flag package's", []string{"-h"}, []string{"-h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := curlArgs(doFlagSet(), tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestCurlArgsUnsupported(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{"-b", "c=1", "u"}, "curl's -b/--cookie is not supported by retryhttp do: use -H 'Cookie: name=value'"},
		{[]string{"--cookie", "c=1", "u"}, "curl's -b/--cookie is not supported"},
		{[]string{"-sSb", "c=1", "u"}, "curl's -b/--cookie is not supported by retryhttp do: use -H 'Cookie: name=value' (in -sSb)"},
		{[]string{"u", "--proxy=http://p"}, "curl's -x/--proxy is not supported by retryhttp do: set the HTTPS_PROXY"},
		{[]string{"-F", "a=@f", "u"}, "curl's -F/--form is not supported"},
	}
	for _, tt := range tests {
		_, err := curlArgs(doFlagSet(), tt.in)
		require.Error(t, err, "%q", tt.in)
		assert.True(t, errors.Is(err, errUnsupported))
		assert.Contains(t, err.Error(), tt.want, "%q", tt.in)
	}
}

// Every name in the table is told apart: none is one of do's own flags,
// and no two entries share a name.
func TestCurlFlagsTable(t *testing.T) {
	fs := doFlagSet()
	seen := map[string]bool{}
	for _, c := range curlFlags {
		for _, name := range []string{c.short, c.long} {
			if name == "" {
				continue
			}
			assert.False(t, seen[name], "%s twice", name)
			seen[name] = true
			if fs.Lookup(name) != nil {
				assert.Equal(t, name, c.to, "%s is one of do's own flags, with another meaning", name)
			}
		}
		if c.to != "" {
			assert.NotNil(t, fs.Lookup(c.to), "%s stands for -%s, which do lacks", c.names(), c.to)
		}
		assert.True(t, c.unsupported || c.to != "" || c.note != "", "%s: an ignored flag says why", c.names())
	}
}

// docs/do-curl-flags.md has a row for every flag of the table, and says
// "not supported" for those the table refuses.
func TestCurlFlagsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../../../docs/do-curl-flags.md")
	require.NoError(t, err)
	rows := map[string]string{} // a flag's name, as the table writes it, to its row
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first, _, _ := strings.Cut(line[2:], " |")
		for _, name := range regexp.MustCompile("`(-[^` ]+)").FindAllStringSubmatch(first, -1) {
			rows[name[1]] = line
		}
	}
	for _, c := range curlFlags {
		for _, name := range strings.Split(c.names(), "/") {
			row, ok := rows[name]
			if !assert.True(t, ok, "%s has no row in docs/do-curl-flags.md", name) {
				continue
			}
			assert.Equal(t, c.unsupported, strings.Contains(row, "| not supported |"), "%s: %s", name, row)
		}
	}
}
