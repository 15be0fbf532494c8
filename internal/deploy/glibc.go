// This file finds which GNU C library versions an ELF binary needs, so
// the build can refuse a binary that would not start on its target system
// ("version `GLIBC_2.36' not found"). Binaries linked against a newer glibc
// than the instances have fail only when they start there, so a toolchain
// or build-host upgrade would otherwise go unnoticed until a deploy.

package deploy

import (
	"cmp"
	"debug/elf"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// GlibcAL2023 is the glibc version of Amazon Linux 2023, the instances' system:
// glibc 2.34 is one of GlibcAL2023's core toolchain packages, kept for the
// release's life (https://docs.aws.amazon.com/linux/al2023/ug/core-glibc.html).
const GlibcAL2023 = "2.34"

// GlibcVersion is a glibc version such as 2.34 or 2.2.5. Missing parts are 0.
type GlibcVersion struct{ Major, Minor, Patch int }

// ParseGlibcVersion reads "2.34", "2.2.5" or a symbol version name such as
// "GLIBC_2.34".
func ParseGlibcVersion(s string) (GlibcVersion, error) {
	parts := strings.Split(strings.TrimPrefix(s, "GLIBC_"), ".")
	if len(parts) < 2 || len(parts) > 3 {
		return GlibcVersion{}, fmt.Errorf("glibc version %q: want major.minor[.patch]", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || p != strconv.Itoa(v) {
			return GlibcVersion{}, fmt.Errorf("glibc version %q: %q is not a number", s, p)
		}
		n[i] = v
	}
	return GlibcVersion{n[0], n[1], n[2]}, nil
}

// Compare orders versions numerically: 2.4 < 2.34 < 2.34.1.
func (v GlibcVersion) Compare(w GlibcVersion) int {
	return cmp.Or(cmp.Compare(v.Major, w.Major), cmp.Compare(v.Minor, w.Minor), cmp.Compare(v.Patch, w.Patch))
}

func (v GlibcVersion) String() string {
	if v.Patch != 0 {
		return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	}
	return fmt.Sprintf("%d.%d", v.Major, v.Minor)
}

// GlibcSymbol is a dynamic symbol a binary imports at a glibc version.
type GlibcSymbol struct {
	Name    string
	Library string // such as libc.so.6
	Version GlibcVersion
}

func (s GlibcSymbol) String() string {
	return fmt.Sprintf("%s@GLIBC_%s (%s)", s.Name, s.Version, s.Library)
}

// GlibcNeeds lists the binary's imported symbols that carry a glibc version,
// newest first. A binary without dynamic symbols (statically linked, or
// built without cgo) needs none.
func GlibcNeeds(path string) ([]GlibcSymbol, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	imported, err := f.ImportedSymbols()
	if errors.Is(err, elf.ErrNoSymbols) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the dynamic symbols of %s: %w", path, err)
	}
	var out []GlibcSymbol
	for _, s := range imported {
		// GLIBC_PRIVATE and other libraries' versions (GLIBCXX_…) are not
		// glibc release numbers.
		if !strings.HasPrefix(s.Version, "GLIBC_") {
			continue
		}
		v, err := ParseGlibcVersion(s.Version)
		if err != nil {
			continue
		}
		out = append(out, GlibcSymbol{Name: s.Name, Library: s.Library, Version: v})
	}
	slices.SortStableFunc(out, func(a, b GlibcSymbol) int { return cmp.Or(b.Version.Compare(a.Version), cmp.Compare(a.Name, b.Name)) })
	return out, nil
}

// GlibcTooNewError is Check's answer for a binary that needs a newer glibc than
// allowed.
type GlibcTooNewError struct {
	Binary  string
	Max     GlibcVersion  // the newest version allowed
	Highest GlibcVersion  // the newest version the binary needs
	Symbols []GlibcSymbol // every symbol needing more than Max, newest first
}

func (e *GlibcTooNewError) Error() string {
	names := make([]string, len(e.Symbols))
	for i, s := range e.Symbols {
		names[i] = s.String()
	}
	return fmt.Sprintf("%s needs glibc %s, newer than the %s allowed; symbols: %s",
		e.Binary, e.Highest, e.Max, strings.Join(names, ", "))
}

// CheckGlibc fails with a *TooNewError when the binary at path imports any
// symbol at a glibc version newer than max (such as AL2023).
func CheckGlibc(path, max string) error {
	limit, err := ParseGlibcVersion(max)
	if err != nil {
		return err
	}
	syms, err := GlibcNeeds(path)
	if err != nil {
		return err
	}
	var over []GlibcSymbol
	for _, s := range syms {
		if s.Version.Compare(limit) > 0 {
			over = append(over, s)
		}
	}
	if len(over) == 0 {
		return nil
	}
	return &GlibcTooNewError{Binary: path, Max: limit, Highest: over[0].Version, Symbols: over}
}
