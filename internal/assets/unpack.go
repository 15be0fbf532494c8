package assets

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ResolveTree is Resolve for a package that is used unpacked, such as
// the CDK CLI: the archive is found or downloaded and checked as Resolve
// does, then unpacked once beside it, into a directory named after it
// without ".tgz", which it returns.
func ResolveTree(ctx context.Context, src Source) (string, error) {
	archive, err := Resolve(ctx, src)
	if err != nil {
		return "", err
	}
	dir := strings.TrimSuffix(archive, ".tgz")
	err = unpackOnce(dir, dir, func(tmp string) error {
		return forEachMember(archive, func(hdr *tar.Header, r io.Reader) error {
			name := filepath.Clean(filepath.FromSlash(hdr.Name))
			if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
				return fmt.Errorf("archive member %q leaves the directory", hdr.Name)
			}
			switch hdr.Typeflag {
			case tar.TypeDir:
				return os.MkdirAll(filepath.Join(tmp, name), 0o755)
			case tar.TypeReg:
				return writeMember(filepath.Join(tmp, name), r, hdr.FileInfo().Mode().Perm()|0o600)
			}
			return nil
		})
	})
	if err != nil {
		return "", fmt.Errorf("%s: unpacking %s: %w", src.What, archive, err)
	}
	return dir, nil
}

// unpackOnce fills dir, unless marker (a path in it) already exists: fill
// writes into a new directory beside dir, which is then renamed into
// place, so that dir only ever appears complete.
func unpackOnce(dir, marker string, fill func(tmp string) error) error {
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o750); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".unpack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := fill(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(marker); statErr == nil {
			return nil // another process unpacking the same archive got there first
		}
		return err
	}
	return nil
}

// forEachMember calls visit with each member of a gzipped tar.
func forEachMember(archive string, visit func(*tar.Header, io.Reader) error) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := visit(hdr, tr); err != nil {
			return err
		}
	}
}

func writeMember(path string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	return errors.Join(err, out.Close())
}
