package assets

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tgz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// server serves body on loopback and counts requests.
func server(t *testing.T, body []byte) (string, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/pkg.tgz", &hits
}

func write(t *testing.T, path, body string) string {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestResolveOrder(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lib := []byte("pretend shared library")
	explicit := write(t, filepath.Join(dir, "explicit.so"), string(lib))
	mirror := filepath.Join(dir, "mirror")
	write(t, filepath.Join(mirror, "ort/lib.so"), string(lib))
	url, hits := server(t, tgz(t, map[string]string{"package/lib.so": string(lib)}))
	src := Source{What: "lib", File: "ort/lib.so", URL: url, Member: "package/lib.so", SHA256: sum(lib), Cache: filepath.Join(dir, "cache")}

	// An explicit path wins.
	p := src
	p.Path, p.Mirrors = explicit, []string{mirror}
	if got, err := Resolve(ctx, p); err != nil || got != explicit {
		t.Fatalf("explicit: %q, %v", got, err)
	}
	// Then a mirror.
	p = src
	p.Mirrors = []string{filepath.Join(dir, "empty"), mirror}
	if got, err := Resolve(ctx, p); err != nil || got != filepath.Join(mirror, "ort/lib.so") {
		t.Fatalf("mirror: %q, %v", got, err)
	}
	// Then a download into the cache, once.
	for range 2 {
		got, err := Resolve(ctx, src)
		if err != nil || got != filepath.Join(src.Cache, "ort/lib.so") {
			t.Fatalf("download: %q, %v", got, err)
		}
		if b, _ := os.ReadFile(got); !bytes.Equal(b, lib) {
			t.Fatal("downloaded file differs")
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("%d downloads, want 1 (the second comes from the cache)", hits.Load())
	}
}

func TestResolveRefusesUnverified(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good, bad := []byte("the real thing"), []byte("tampered")
	url, _ := server(t, tgz(t, map[string]string{"lib.so": string(bad)}))
	src := Source{What: "lib", File: "lib.so", URL: url, Member: "lib.so", SHA256: sum(good), Cache: dir}
	if _, err := Resolve(ctx, src); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("tampered download: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "lib.so")); err == nil {
		t.Fatal("a file that failed verification was left in the cache")
	}
	// A tampered mirror copy is refused, not silently replaced.
	write(t, filepath.Join(dir, "m", "lib.so"), string(bad))
	src.Mirrors = []string{filepath.Join(dir, "m")}
	if _, err := Resolve(ctx, src); err == nil {
		t.Fatal("tampered mirror copy accepted")
	}
	// No digest, no download.
	if _, err := Resolve(ctx, Source{What: "lib", File: "x", URL: url, Cache: dir}); err == nil || !strings.Contains(err.Error(), "without a SHA-256") {
		t.Fatalf("download without a digest: %v", err)
	}
	// Nowhere to look is a clear error.
	_, err := Resolve(ctx, Source{What: "ONNX Runtime", File: "x", Mirrors: []string{dir}})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "ONNX Runtime") {
		t.Fatalf("nothing configured: %v", err)
	}
	// A member missing from the archive.
	if _, err := Resolve(ctx, Source{What: "lib", File: "y", URL: url, Member: "nope", SHA256: sum(good), Cache: dir}); err == nil || !strings.Contains(err.Error(), "no nope") {
		t.Fatalf("missing member: %v", err)
	}
}

func TestResolveModel(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	folder := filepath.Join(dir, "models", "tiny")
	write(t, filepath.Join(folder, "model.onnx"), "onnx bytes")
	write(t, filepath.Join(folder, "labels.txt"), "cat\ndog\n")

	for name, spec := range map[string]string{"name in a mirror": "tiny", "folder": folder, "file": filepath.Join(folder, "model.onnx")} {
		m, err := ResolveModel(ctx, ModelConfig{Spec: spec, Mirrors: []string{filepath.Join(dir, "models")}})
		if err != nil || m.Name != "tiny" || m.Path != filepath.Join(folder, "model.onnx") || m.Labels != filepath.Join(folder, "labels.txt") {
			t.Errorf("%s: %+v, %v", name, m, err)
		}
	}
	if _, err := ResolveModel(ctx, ModelConfig{Spec: "absent", Mirrors: []string{dir}}); err == nil || !strings.Contains(err.Error(), "SURGE_MODELS") {
		t.Errorf("absent model: %v", err)
	}
	if _, err := ResolveModel(ctx, ModelConfig{Spec: "tiny", SHA256: sum([]byte("other")), Mirrors: []string{filepath.Join(dir, "models")}}); err == nil {
		t.Error("a model with the wrong digest was accepted")
	}
	// A known model is checked against its published digest.
	write(t, filepath.Join(dir, "fake", DefaultModel, "model.onnx"), "not the real model")
	write(t, filepath.Join(dir, "fake", DefaultModel, "labels.txt"), "x\n")
	if _, err := ResolveModel(ctx, ModelConfig{Mirrors: []string{filepath.Join(dir, "fake")}}); err == nil {
		t.Error("a fake copy of the default model was accepted")
	}
}

func TestModelFromURL(t *testing.T) {
	ctx := context.Background()
	archive := tgz(t, map[string]string{
		"tiny/model.onnx":    "onnx bytes",
		"tiny/labels.txt":    "cat\ndog\n",
		"../../escape.txt":   "hostile",
		"/etc/labels.txt.sh": "hostile",
	})
	url, hits := server(t, archive)
	cache := t.TempDir()
	cfg := ModelConfig{Spec: url, SHA256: sum(archive), Cache: cache}
	for range 2 {
		m, err := ResolveModel(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(m.Labels); string(b) != "cat\ndog\n" {
			t.Fatalf("labels %q", b)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("%d downloads, want 1", hits.Load())
	}
	if _, err := os.Stat(filepath.Join(cache, "..", "escape.txt")); err == nil {
		t.Fatal("an archive member escaped the cache")
	}
	cfg.SHA256 = ""
	if _, err := ResolveModel(ctx, cfg); err == nil || !strings.Contains(err.Error(), "SURGE_MODEL_SHA256") {
		t.Fatalf("URL without digest: %v", err)
	}
}

func TestModelName(t *testing.T) {
	for spec, want := range map[string]string{
		"":                                    DefaultModel,
		"mobilenetv2-12-int8":                 "mobilenetv2-12-int8",
		"/opt/surge/models/resnet/model.onnx": "resnet",
		"/data/models/resnet":                 "resnet",
		"https://example.com/m/squeezenet.tar.gz": "squeezenet",
		"http://example.com/effnet.tgz":           "effnet",
	} {
		if got := ModelName(spec); got != want {
			t.Errorf("ModelName(%q) = %q, want %q", spec, got, want)
		}
	}
}

func TestResolveTreeUnpacksOnceAndChecks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pkg := tgz(t, map[string]string{"package/bin/cdk": "#!/usr/bin/env node\n", "package/lib/index.js": "module.exports = 1\n"})
	url, hits := server(t, pkg)
	src := Source{What: "cli", File: "cli/1.0/cli-1.0.tgz", URL: url, SHA256: sum(pkg), Cache: filepath.Join(dir, "cache")}
	for range 2 {
		got, err := ResolveTree(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, "cache", "cli", "1.0", "cli-1.0"); got != want {
			t.Fatalf("unpacked into %s, want %s", got, want)
		}
		if b, err := os.ReadFile(filepath.Join(got, "package", "lib", "index.js")); err != nil || string(b) != "module.exports = 1\n" {
			t.Fatalf("unpacked file: %q, %v", b, err)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("downloaded %d times, want once", n)
	}

	// A download that does not match its digest is never unpacked.
	bad := src
	bad.File, bad.SHA256 = "cli/2.0/cli-2.0.tgz", sum([]byte("something else"))
	if _, err := ResolveTree(ctx, bad); err == nil {
		t.Fatal("an archive with the wrong digest was used")
	}
	if _, err := os.Stat(filepath.Join(dir, "cache", "cli", "2.0", "cli-2.0")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the wrong archive was unpacked: %v", err)
	}

	// Members may not climb out of the directory.
	evil := tgz(t, map[string]string{"../outside": "x"})
	url, _ = server(t, evil)
	if _, err := ResolveTree(ctx, Source{What: "evil", File: "e/e.tgz", URL: url, SHA256: sum(evil), Cache: filepath.Join(dir, "cache")}); err == nil || !strings.Contains(err.Error(), "leaves the directory") {
		t.Errorf("an archive writing outside its directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cache", "e", "outside")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a member was written outside: %v", err)
	}
}

// The pinned C API is the pinned release's: ONNX Runtime 1.N introduced C
// API N, so moving one without the other would ship a library the binding
// refuses, or bind an API older than the one tested.
func TestRuntimeAPIIsTheRelease(t *testing.T) {
	if minor := strings.Split(RuntimeVersion, ".")[1]; minor != strconv.Itoa(RuntimeAPIVersion) {
		t.Errorf("RuntimeVersion %s pins C API %d, want %s", RuntimeVersion, RuntimeAPIVersion, minor)
	}
}
