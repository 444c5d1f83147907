package main

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readLayout returns the manifest digest of the layout's one image and its layer's path and size.
func readLayout(t *testing.T, dir string) (string, string, int64) {
	t.Helper()
	var idx index
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %v %s", err, b)
	}
	md := idx.Manifests[0].Digest
	var m manifest
	b, err = os.ReadFile(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(md, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("manifest: %v %s", err, b)
	}
	l := m.Layers[0]
	return md, filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(l.Digest, "sha256:")), l.Size
}

// layerContents reads the gzip tar: the apk database and the total file bytes.
func layerContents(t *testing.T, path string) (string, int64, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var apk string
	var total int64
	files := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		files++
		total += h.Size
		if h.Name == "lib/apk/db/installed" {
			b, _ := io.ReadAll(tr)
			apk = string(b)
		}
	}
	return apk, total, files
}

func TestSmallImageUnchanged(t *testing.T) {
	dir := t.TempDir()
	if err := run([]string{"image", "--out", dir, "--tag", "1"}); err != nil {
		t.Fatal(err)
	}
	md, layer, _ := readLayout(t, dir)
	// The tiny image's digest, as the sandbox and tests have always had it (Go 1.26 gzip).
	if md != "sha256:95191d69dc576dfaa0f6344e1182a301ae458173404c0b8d05d7b664e3f6c697" {
		t.Fatalf("small image manifest digest changed: %s", md)
	}
	apk, _, files := layerContents(t, layer)
	if n := strings.Count(apk, "\nP:"); n != 2 || files != 3 {
		t.Fatalf("small image: want 2 packages and 3 files, got %d packages, %d files", n, files)
	}
}

func TestLargeImageSizeCountAndDeterminism(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	args := func(dir, seed string) []string {
		return []string{"image", "--out", dir, "--tag", "big", "--packages", "40", "--layer-mb", "3", "--seed", seed}
	}
	for _, x := range [][2]string{{a, "7"}, {b, "7"}, {c, "8"}} {
		if err := run(args(x[0], x[1])); err != nil {
			t.Fatal(err)
		}
	}
	mdA, layerA, sizeA := readLayout(t, a)
	mdB, _, _ := readLayout(t, b)
	mdC, _, _ := readLayout(t, c)
	if mdA != mdB {
		t.Fatalf("same seed, different images: %s vs %s", mdA, mdB)
	}
	if mdA == mdC {
		t.Fatalf("different seeds, same image %s", mdA)
	}
	st, err := os.Stat(layerA)
	if err != nil || st.Size() != sizeA || st.Mode().Perm() != 0o644 {
		t.Fatalf("layer blob: %v size %d (manifest %d) mode %v", err, st.Size(), sizeA, st.Mode())
	}
	if sizeA < 2_850_000 || sizeA > 3_150_000 {
		t.Fatalf("--layer-mb 3: gzip layer is %d bytes, want 3 MB ±5%%", sizeA)
	}
	apk, total, files := layerContents(t, layerA)
	if n := strings.Count(apk, "\nP:"); !strings.HasPrefix(apk, "C:") || n != 40 {
		t.Fatalf("want 40 packages in lib/apk/db/installed, got %d", n)
	}
	for _, want := range []string{"P:musl\nV:1.1.22-r3\n", "P:openssl\nV:1.1.1c-r0\n", "P:libfx039\n", "F:usr/lib/libfx002\nR:liblibfx002-01.so\n"} {
		if !strings.Contains(apk, want) {
			t.Fatalf("lib/apk/db/installed lacks %q", want)
		}
	}
	if total < 2*sizeA || files < 40*10 {
		t.Fatalf("want a tar over 2× the gzip blob and ≥ 400 files, got %d bytes, %d files", total, files)
	}
}

func TestLargeImageBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"image", "--out", t.TempDir(), "--packages", "1"},
		{"image", "--out", t.TempDir(), "--packages", "999999"},
		{"image", "--out", t.TempDir(), "--layer-mb", "0"},
		{"image", "--out", t.TempDir(), "--seed", "x"},
	} {
		if err := run(args); err == nil {
			t.Fatalf("%v: want an error", args)
		}
	}
}
