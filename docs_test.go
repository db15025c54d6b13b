package retryhttp_test

import (
	"bufio"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
)

// The documents whose links and Go blocks are checked: the README, how to
// contribute, and every guide in docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	guides, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"README.md", "CONTRIBUTING.md"}, guides...)
}

// A markdown document as the tests see it: its links outside code, its
// headings' anchors, and its fenced Go blocks.
type doc struct {
	path     string
	links    []docLink
	anchors  map[string]bool
	goBlocks []goBlock
}

type docLink struct {
	line   int
	target string
}

type goBlock struct {
	line     int // the line of the opening fence
	src      string
	skipWhy  string // from <!-- not compiled: why --> right before the fence
	fragment bool   // no package clause: wrapped in func main
}

var (
	linkRE       = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	codeSpanRE   = regexp.MustCompile("`[^`]*`")
	headingRE    = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
	notCompiled  = regexp.MustCompile(`^<!--\s*not compiled:\s*(.+?)\s*-->$`)
	packageRE    = regexp.MustCompile(`(?m)^package \w+`)
	headingLinkR = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

func readDoc(t *testing.T, path string) *doc {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := &doc{path: path, anchors: map[string]bool{}}
	seen := map[string]int{}
	var (
		fence     string // the open fence, "" outside code
		lang      string
		start     int
		body      strings.Builder
		prev      string
		blockPrev string
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				if lang == "go" {
					b := goBlock{line: start, src: body.String(), fragment: !packageRE.MatchString(body.String())}
					if m := notCompiled.FindStringSubmatch(strings.TrimSpace(blockPrev)); m != nil {
						b.skipWhy = m[1]
					}
					d.goBlocks = append(d.goBlocks, b)
				}
				fence = ""
			} else {
				body.WriteString(line + "\n")
			}
			prev = line
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			lang = strings.TrimSpace(strings.TrimLeft(trimmed, "`~"))
			start, blockPrev = n, prev
			body.Reset()
			prev = line
			continue
		}
		if m := headingRE.FindStringSubmatch(line); m != nil {
			a := githubAnchor(m[2])
			if k := seen[a]; k > 0 {
				d.anchors[fmt.Sprintf("%s-%d", a, k)] = true
			} else {
				d.anchors[a] = true
			}
			seen[a]++
		}
		for _, m := range linkRE.FindAllStringSubmatch(codeSpanRE.ReplaceAllString(line, "``"), -1) {
			d.links = append(d.links, docLink{line: n, target: m[1]})
		}
		prev = line
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if fence != "" {
		t.Errorf("%s:%d: a code block is never closed", path, start)
	}
	return d
}

// githubAnchor is the id GitHub gives a heading: its text without markup,
// lowercased, with every character but letters, digits, spaces, hyphens and
// underscores removed, and spaces made hyphens.
func githubAnchor(heading string) string {
	heading = headingLinkR.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestDocsLinksResolve: every relative link of the README, CONTRIBUTING.md
// and docs/*.md names a file or folder that exists, and every #fragment a
// heading of the document it points to.
func TestDocsLinksResolve(t *testing.T) {
	docs := map[string]*doc{}
	load := func(path string) *doc {
		if d, ok := docs[path]; ok {
			return d
		}
		d := readDoc(t, path)
		docs[path] = d
		return d
	}
	files := docFiles(t)
	checked := 0
	for _, path := range files {
		for _, l := range load(path).links {
			if regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`).MatchString(l.target) {
				continue // http:, https:, mailto:
			}
			checked++
			where := fmt.Sprintf("%s:%d: link %q", path, l.line, l.target)
			file, fragment, _ := strings.Cut(l.target, "#")
			target := path
			if file != "" {
				target = filepath.ToSlash(filepath.Join(filepath.Dir(path), file))
			}
			info, err := os.Stat(target)
			if err != nil {
				t.Errorf("%s: %s does not exist", where, target)
				continue
			}
			if fragment == "" {
				continue
			}
			if info.IsDir() || !strings.HasSuffix(target, ".md") {
				t.Errorf("%s: a #fragment on %s, which is not a markdown document", where, target)
				continue
			}
			if !load(target).anchors[fragment] {
				t.Errorf("%s: %s has no heading with the anchor #%s", where, target, fragment)
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d relative links found in %v: is the parser broken?", checked, files)
	}
}

// TestDocsGitHubAnchors: headings get the ids GitHub gives them.
func TestDocsGitHubAnchors(t *testing.T) {
	for heading, want := range map[string]string{
		"What is retried, and what never is": "what-is-retried-and-what-never-is",
		"`retryhttp sim`":                    "retryhttp-sim",
		"Retry budget (on by default)":       "retry-budget-on-by-default",
		"See [the guide](docs/x.md) now":     "see-the-guide-now",
		"GitHub's primary rate limit":        "githubs-primary-rate-limit",
		"A busy machine: `-busy`":            "a-busy-machine--busy",
		"Retries: 408, 429 & 5xx":            "retries-408-429--5xx",
		"snake_case stays":                   "snake_case-stays",
	} {
		if got := githubAnchor(heading); got != want {
			t.Errorf("githubAnchor(%q) = %q, want %q", heading, got, want)
		}
	}
}

// fragmentPrelude is what a Go block without a package clause compiles in:
// it becomes the body of func main, with these imports and names at hand.
const fragmentPrelude = `package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/retryhttp/retryhttp"
)

var (
	_ = errors.New
	_ = fmt.Sprint
	_ = slog.Default
	_ = os.Exit
	_ = time.Second
	_ = retryhttp.New
)

// Names a fragment may use as if the surrounding code had them.
var (
	ctx                            = context.Background()
	reg         prometheus.Registerer = prometheus.NewRegistry()
	url                            = "https://api.example.com/items"
	myTransport http.RoundTripper  = http.DefaultTransport
)

func main() {
`

// wrapFragment makes a compilable file of a fragment: its statements become
// func main's, and each variable they declare is marked used, as the code
// around a fragment would use it.
func wrapFragment(src string) (string, error) {
	file := fragmentPrelude + src + "\n}\n"
	f, err := parser.ParseFile(token.NewFileSet(), "fragment.go", file, 0)
	if err != nil {
		return "", err
	}
	var used []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "main" {
			continue
		}
		for _, s := range fn.Body.List {
			switch s := s.(type) {
			case *ast.AssignStmt:
				if s.Tok == token.DEFINE {
					for _, e := range s.Lhs {
						if id, ok := e.(*ast.Ident); ok && id.Name != "_" {
							used = append(used, id.Name)
						}
					}
				}
			case *ast.DeclStmt:
				if g, ok := s.Decl.(*ast.GenDecl); ok && g.Tok == token.VAR {
					for _, spec := range g.Specs {
						for _, id := range spec.(*ast.ValueSpec).Names {
							if id.Name != "_" {
								used = append(used, id.Name)
							}
						}
					}
				}
			}
		}
	}
	var b strings.Builder
	b.WriteString(fragmentPrelude + src + "\n")
	for _, name := range used {
		fmt.Fprintf(&b, "\t_ = %s\n", name)
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// TestDocsGoBlocksCompile: every ```go block of the README, CONTRIBUTING.md
// and docs/*.md compiles against this checkout, each in a package of its own
// in a temporary module, all checked by one go vet. A block with a package
// clause is taken as it is; one without is wrapped by wrapFragment; one right
// after <!-- not compiled: why --> is skipped.
func TestDocsGoBlocksCompile(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The library's own requirements, so that nothing needs resolving anew.
	gomod := regexp.MustCompile(`(?m)^module .*$`).ReplaceAllString(string(mod), "module docblocks") +
		"\nrequire github.com/retryhttp/retryhttp v0.0.0\n\nreplace github.com/retryhttp/retryhttp => " + root + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	where := map[string]string{} // package folder -> document:line
	for _, path := range docFiles(t) {
		for _, b := range readDoc(t, path).goBlocks {
			at := fmt.Sprintf("%s:%d", path, b.line)
			if b.skipWhy != "" {
				t.Logf("%s: not compiled: %s", at, b.skipWhy)
				continue
			}
			src := b.src
			if b.fragment {
				if src, err = wrapFragment(b.src); err != nil {
					t.Errorf("%s: the Go block does not parse as statements: %v", at, err)
					continue
				}
			}
			pkg := fmt.Sprintf("b%03d", len(where))
			where[pkg] = at
			if err := os.MkdirAll(filepath.Join(dir, pkg), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, pkg, "main.go"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(where) < 5 {
		t.Fatalf("only %d Go blocks found: is the parser broken?", len(where))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "vet", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		report := string(out)
		for pkg, at := range where {
			report = strings.ReplaceAll(report, "./"+pkg+"/main.go", at+" (as "+pkg+"/main.go)")
			report = strings.ReplaceAll(report, "docblocks/"+pkg, at)
		}
		t.Fatalf("go vet of the docs' Go blocks: %v\n%s", err, report)
	}
	t.Logf("%d Go blocks compile", len(where))
}
