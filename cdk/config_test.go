package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/surgeml/surge/internal/testenv"
)

// docsOption is a row's key in docs/aws.md's table of context options,
// with the row's default column.
type docsOption struct {
	key, def string
}

// documentedOptions are the keys of docs/aws.md's "Context options"
// table, in its order (a row may name several), with their row's default
// column.
func documentedOptions(t *testing.T) []docsOption {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.Root(t), "docs", "aws.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n### Context options\n")
	if !ok {
		t.Fatal(`docs/aws.md has no "### Context options" section`)
	}
	section, _, _ = strings.Cut(section, "\n#")
	key := regexp.MustCompile("`([^`]+)`")
	var out []docsOption
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		for _, m := range key.FindAllStringSubmatch(cells[1], -1) {
			out = append(out, docsOption{key: m[1], def: strings.TrimSpace(cells[2])})
		}
	}
	return out
}

// The docs' table lists exactly options' keys, in options' order, and
// states each default that does not depend on the machine.
func TestContextOptionsDocumented(t *testing.T) {
	repo := testenv.Root(t)
	documented := documentedOptions(t)
	var docKeys, keys []string
	for _, d := range documented {
		docKeys = append(docKeys, d.key)
	}
	for _, o := range options(repo, course{}) {
		keys = append(keys, o.key)
	}
	if !slices.Equal(docKeys, keys) {
		t.Fatalf("docs/aws.md's context options %v\n  differ from options' %v", docKeys, keys)
	}
	for i, o := range options(repo, course{}) {
		// modelDir and ortLib default to paths found on this machine,
		// which the docs describe rather than state.
		if o.def == "" || filepath.IsAbs(o.def) {
			continue
		}
		if !strings.Contains(documented[i].def, o.def) {
			t.Errorf("docs/aws.md: %s defaults to %q, not %q", o.key, documented[i].def, o.def)
		}
	}
}
