package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// All timestamps in the image are fixed so that the layer, config and manifest
// digests are the same on every run (for a given Go toolchain's gzip output).
var imageTime = time.Date(2019, 8, 20, 20, 19, 55, 0, time.UTC)

const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
	annotationRefName = "org.opencontainers.image.ref.name"
)

type apkPackage struct {
	name, version, origin, arch, license, description, url string
}

var apkPackages = []apkPackage{
	{"musl", "1.1.22-r3", "musl", "x86_64", "MIT", "the musl c library (libc) implementation", "https://musl.libc.org/"},
	{"openssl", "1.1.1c-r0", "openssl", "x86_64", "OpenSSL", "Toolkit for Transport Layer Security (TLS)", "https://www.openssl.org/"},
}

const osRelease = `NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.10.2
PRETTY_NAME="Alpine Linux v3.10"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://bugs.alpinelinux.org/"
`

func runImage(args []string) error {
	fs := newFlagSet("image")
	out := fs.String("out", "", "output OCI image layout directory (required)")
	tag := fs.String("tag", "1", "tag stored as org.opencontainers.image.ref.name in index.json")
	packages := fs.Int("packages", defaultBigPackages, "large image: number of apk packages (musl and openssl included)")
	layerMB := fs.Int("layer-mb", defaultBigLayerMB, "large image: size of the gzip layer in MB (10^6 bytes)")
	seed := fs.Uint64("seed", 1, "large image: seed of the generated content")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("image: --out is required")
	}
	if *tag == "" || strings.ContainsAny(*tag, " \t\n/:@") {
		return fmt.Errorf("image: invalid --tag %q", *tag)
	}
	// Any of the large-image flags selects the large image; without them it is the tiny one.
	big := false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "packages", "layer-mb", "seed":
			big = true
		}
	})
	if !big {
		return writeLayout(*out, *tag, writeSmallLayer)
	}
	spec := bigSpec{packages: *packages, layerBytes: int64(*layerMB) * 1_000_000, seed: *seed}
	if *packages < len(apkPackages) || *packages > maxBigPackages {
		return fmt.Errorf("image: --packages must be between %d and %d, got %d", len(apkPackages), maxBigPackages, *packages)
	}
	if *layerMB < 1 || *layerMB > maxBigLayerMB {
		return fmt.Errorf("image: --layer-mb must be between 1 and %d, got %d", maxBigLayerMB, *layerMB)
	}
	return writeLayout(*out, *tag, func(blobDir string) (layerInfo, error) { return writeBigLayer(blobDir, spec) })
}

// layerInfo describes the one layer blob, already written to blobs/sha256/.
type layerInfo struct {
	digest, diffID string // of the gzip blob and of the uncompressed tar
	size, tarSize  int64
	files          int
	packages       int
	history        string
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type imageConfig struct {
	Created      string `json:"created"`
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		Env []string `json:"Env"`
		Cmd []string `json:"Cmd"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		Created   string `json:"created"`
		CreatedBy string `json:"created_by"`
	} `json:"history"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// writeLayout writes the OCI layout: buildLayer writes the layer blob into blobs/sha256/, then the
// config, manifest, oci-layout and index.json follow (index.json last, so a layout that was cut
// short has none).
func writeLayout(dir, tag string, buildLayer func(blobDir string) (layerInfo, error)) error {
	// Overwrite: drop only the layout's own entries, never anything else in dir.
	for _, name := range []string{"index.json", "oci-layout", "blobs"} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("image: clean %s: %w", name, err)
		}
	}
	blobDir := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return fmt.Errorf("image: create %s: %w", blobDir, err)
	}
	layer, err := buildLayer(blobDir)
	if err != nil {
		return err
	}

	var cfg imageConfig
	cfg.Created = imageTime.Format(time.RFC3339)
	cfg.Architecture = "amd64"
	cfg.OS = "linux"
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Cmd = []string{"/bin/sh"}
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{layer.diffID} // diff_id = digest of the uncompressed tar
	cfg.History = append(cfg.History, struct {
		Created   string `json:"created"`
		CreatedBy string `json:"created_by"`
	}{cfg.Created, layer.history})
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("image: encode config: %w", err)
	}

	m := manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        descriptor{MediaType: mediaTypeConfig, Digest: digestOf(cfgJSON), Size: int64(len(cfgJSON))},
		Layers:        []descriptor{{MediaType: mediaTypeLayer, Digest: layer.digest, Size: layer.size}},
	}
	manifestJSON, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("image: encode manifest: %w", err)
	}

	idx := index{
		SchemaVersion: 2,
		MediaType:     mediaTypeIndex,
		Manifests: []descriptor{{
			MediaType:   mediaTypeManifest,
			Digest:      digestOf(manifestJSON),
			Size:        int64(len(manifestJSON)),
			Annotations: map[string]string{annotationRefName: tag},
			Platform:    &platform{Architecture: "amd64", OS: "linux"},
		}},
	}
	indexJSON, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("image: encode index: %w", err)
	}

	for _, blob := range [][]byte{cfgJSON, manifestJSON} {
		name := strings.TrimPrefix(digestOf(blob), "sha256:")
		if err := os.WriteFile(filepath.Join(blobDir, name), blob, 0o644); err != nil {
			return fmt.Errorf("image: write blob: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return fmt.Errorf("image: write oci-layout: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), indexJSON, 0o644); err != nil {
		return fmt.Errorf("image: write index.json: %w", err)
	}
	fmt.Fprintf(os.Stdout, "image %s:%s@%s: %d packages, %d files, layer %d bytes gzip (%d uncompressed)\n",
		dir, tag, digestOf(manifestJSON), layer.packages, layer.files, layer.size, layer.tarSize)
	return nil
}

// writeSmallLayer is the tiny Alpine 3.10.2 layer (2 packages, 3 files), compressed in memory.
func writeSmallLayer(blobDir string) (layerInfo, error) {
	layerTar, err := buildLayerTar()
	if err != nil {
		return layerInfo{}, fmt.Errorf("image: build layer: %w", err)
	}
	layerGz, err := gzipBytes(layerTar)
	if err != nil {
		return layerInfo{}, fmt.Errorf("image: compress layer: %w", err)
	}
	name := strings.TrimPrefix(digestOf(layerGz), "sha256:")
	if err := os.WriteFile(filepath.Join(blobDir, name), layerGz, 0o644); err != nil {
		return layerInfo{}, fmt.Errorf("image: write blob: %w", err)
	}
	return layerInfo{
		digest: digestOf(layerGz), diffID: digestOf(layerTar), size: int64(len(layerGz)), tarSize: int64(len(layerTar)),
		files: 3, packages: len(apkPackages), history: "labfixtures image (alpine 3.10.2 test fixture)",
	}, nil
}

func buildLayerTar() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := []string{"etc/", "lib/", "lib/apk/", "lib/apk/db/"}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: imageTime, Format: tar.FormatUSTAR,
		}); err != nil {
			return nil, err
		}
	}
	files := []struct{ name, body string }{
		{"etc/alpine-release", "3.10.2\n"},
		{"etc/os-release", osRelease},
		{"lib/apk/db/installed", apkInstalled()},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.body)),
			ModTime: imageTime, Format: tar.FormatUSTAR,
		}); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// apkInstalled renders lib/apk/db/installed. The C: checksums are synthetic but
// well-formed (Q1 + base64 SHA-1), as in a real database.
func apkInstalled() string {
	var b strings.Builder
	for _, p := range apkPackages {
		sum := sha1.Sum([]byte(p.name + "-" + p.version))
		fmt.Fprintf(&b, "C:Q1%s\n", base64.StdEncoding.EncodeToString(sum[:]))
		fmt.Fprintf(&b, "P:%s\nV:%s\nA:%s\n", p.name, p.version, p.arch)
		fmt.Fprintf(&b, "T:%s\nU:%s\nL:%s\no:%s\n", p.description, p.url, p.license, p.origin)
		fmt.Fprintf(&b, "t:%d\n\n", imageTime.Unix())
	}
	return b.String()
}

func gzipBytes(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	// Header ModTime/Name left zero for reproducible output.
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
