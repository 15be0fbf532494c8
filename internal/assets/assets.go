// Package assets finds the files Surge needs at run time, the models and
// the ONNX Runtime library: an explicit path first, then mirror
// directories, then a download that must match a known SHA-256. Downloads
// are cached, and nothing unverified is ever used.
package assets

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Source says where one file may come from, in order of preference.
type Source struct {
	What    string   // for messages: "ONNX Runtime 1.22.0 (linux/amd64)"
	Path    string   // an explicit file; wins when set
	Mirrors []string // directories that may hold File
	File    string   // the file's relative path inside a mirror or the cache
	URL     string   // where to download it (a file, or a .tgz holding Member)
	Member  string   // path of the file inside the downloaded archive
	SHA256  string   // hex digest the file must have; required to download
	Cache   string   // directory where downloads are kept (as a mirror)
	Client  *http.Client
	Log     *slog.Logger
}

// ErrUnavailable reports that no configured place has the file.
var ErrUnavailable = errors.New("not available")

// Resolve returns a local path holding the file, downloading it if no
// local copy exists and a URL is configured.
func Resolve(ctx context.Context, src Source) (string, error) {
	if src.Path != "" {
		if err := verify(src.Path, src.SHA256); err != nil {
			return "", fmt.Errorf("%s: %w", src.What, err)
		}
		return src.Path, nil
	}
	var looked []string
	for _, dir := range append(append([]string(nil), src.Mirrors...), src.Cache) {
		if dir == "" || src.File == "" {
			continue
		}
		p := filepath.Join(dir, src.File)
		looked = append(looked, p)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := verify(p, src.SHA256); err != nil {
			return "", fmt.Errorf("%s: %w", src.What, err)
		}
		return p, nil
	}
	switch {
	case src.URL == "":
		return "", fmt.Errorf("%s: %w: not found in %s and no download URL is configured",
			src.What, ErrUnavailable, orNothing(looked))
	case src.SHA256 == "":
		return "", fmt.Errorf("%s: refusing to download %s without a SHA-256 to check it against", src.What, src.URL)
	case src.Cache == "" || src.File == "":
		return "", fmt.Errorf("%s: no cache directory to download into", src.What)
	}
	dst := filepath.Join(src.Cache, src.File)
	if err := download(ctx, src, dst); err != nil {
		return "", fmt.Errorf("%s: downloading %s: %w", src.What, src.URL, err)
	}
	return dst, nil
}

func orNothing(paths []string) string {
	if len(paths) == 0 {
		return "no mirror"
	}
	return strings.Join(paths, ", ")
}

// verify checks that path exists and, when want is set, hashes to it.
func verify(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if want == "" {
		return nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("hashing %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want) {
		return fmt.Errorf("%s has SHA-256 %s, want %s", path, got, want)
	}
	return nil
}

func download(ctx context.Context, src Source, dst string) error {
	log := src.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := src.Client
	if client == nil {
		client = http.DefaultClient
	}
	log.Info("downloading", "what", src.What, "url", src.URL, "to", dst)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("server answered %s", resp.Status)
	}
	body := io.Reader(resp.Body)
	if src.Member != "" {
		if body, err = tarMember(body, src.Member); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return err
	}
	// Hash while writing a temporary file beside dst; only a verified,
	// synced file is renamed into the cache. (Not renameio, which the
	// rest of Surge uses: this package is part of the CDK app, which
	// builds for Windows too.)
	t, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".part-")
	if err != nil {
		return err
	}
	defer os.Remove(t.Name())
	defer t.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(t, h), body); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, src.SHA256) {
		return fmt.Errorf("download has SHA-256 %s, want %s", got, src.SHA256)
	}
	if err := errors.Join(t.Chmod(0o640), t.Sync(), t.Close()); err != nil {
		return err
	}
	if err := os.Rename(t.Name(), dst); err != nil {
		return err
	}
	log.Info("downloaded", "what", src.What, "path", dst)
	return nil
}

// tarMember positions a gzipped tar stream at one member.
func tarMember(r io.Reader, member string) (io.Reader, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("reading archive: %w", err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("archive has no %s", member)
		}
		if err != nil {
			return nil, fmt.Errorf("reading archive: %w", err)
		}
		if hdr.Name == member && hdr.Typeflag == tar.TypeReg {
			return tr, nil
		}
	}
}
