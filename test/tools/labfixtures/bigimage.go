package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// The large image stands in for a real base image such as ubi9/ubi-minimal:9.4 (about 100
// packages, ~38 MB compressed, ~95 MB on disk), so that a scan of it costs what a real one costs:
// the client downloads, decompresses and walks every byte of the layer.
const (
	defaultBigPackages = 100
	defaultBigLayerMB  = 38
	maxBigPackages     = 5000
	maxBigLayerMB      = 1024
	// Each binary file is its random (incompressible) part followed by zero padding of this many
	// times its size, so the tar is ~2.4× the gzip blob, as for ubi-minimal.
	paddingRatio = 1.4
)

type bigSpec struct {
	packages   int
	layerBytes int64 // target size of the gzip layer blob
	seed       uint64
}

type bigFile struct {
	dir, name string
	mode      int64
	random    int64 // bytes of random content
	padding   int64 // zero bytes after it
	text      bool  // a README made of words instead
}

type bigPackage struct {
	apkPackage
	files []bigFile
}

var readmeWords = strings.Fields(`the a of to and in is for with on this that library package file
	data system support version build install config runtime module interface default option value
	error handler buffer stream socket thread memory cache format parser encoder decoder protocol`)

// planBigImage decides, from the seed alone, every package, file and size of the large image.
func planBigImage(spec bigSpec, rng *rand.Rand) []bigPackage {
	pkgs := make([]bigPackage, 0, spec.packages)
	for i := 0; i < spec.packages; i++ {
		var p apkPackage
		if i < len(apkPackages) {
			p = apkPackages[i] // musl and openssl, so the fixture DB has findings for this image too
		} else {
			name := fmt.Sprintf("libfx%03d", i)
			p = apkPackage{
				name:        name,
				version:     fmt.Sprintf("%d.%d.%d-r%d", 1+rng.IntN(9), rng.IntN(20), rng.IntN(30), rng.IntN(5)),
				origin:      name,
				arch:        "x86_64",
				license:     []string{"MIT", "BSD-3-Clause", "GPL-2.0-or-later", "LGPL-2.1-or-later", "Apache-2.0"}[rng.IntN(5)],
				description: fmt.Sprintf("labfixtures generated package %d", i),
				url:         "https://example.invalid/" + name,
			}
		}
		n := 10 + rng.IntN(31) // 10..40 files, ~25 on average
		files := make([]bigFile, 0, n)
		files = append(files, bigFile{dir: "usr/bin", name: p.name, mode: 0o755})
		for j := 1; j < n-1; j++ {
			files = append(files, bigFile{dir: "usr/lib/" + p.name, name: fmt.Sprintf("lib%s-%02d.so", p.name, j), mode: 0o755})
		}
		files = append(files, bigFile{dir: "usr/share/doc/" + p.name, name: "README", mode: 0o644, text: true})
		pkgs = append(pkgs, bigPackage{apkPackage: p, files: files})
	}
	// Spread the random bytes over the binary files with exponential weights (a few big files,
	// many small ones). ~2% of the target is left for tar headers, READMEs and the apk database.
	var weights []float64
	total := 0.0
	for _, p := range pkgs {
		for _, f := range p.files {
			if !f.text {
				w := rng.ExpFloat64()
				weights = append(weights, w)
				total += w
			}
		}
	}
	budget := float64(spec.layerBytes) * 0.981
	k := 0
	for pi := range pkgs {
		for fi := range pkgs[pi].files {
			f := &pkgs[pi].files[fi]
			if f.text {
				f.random = int64(2048 + rng.IntN(6144))
				continue
			}
			f.random = int64(budget * weights[k] / total)
			f.padding = int64(float64(f.random) * paddingRatio)
			k++
		}
	}
	return pkgs
}

// bigApkInstalled renders lib/apk/db/installed with each package's files (F: directory, R: file).
func bigApkInstalled(pkgs []bigPackage) string {
	var b strings.Builder
	for _, p := range pkgs {
		sum := sha1.Sum([]byte(p.name + "-" + p.version))
		var size int64
		for _, f := range p.files {
			size += f.random + f.padding
		}
		fmt.Fprintf(&b, "C:Q1%s\n", base64.StdEncoding.EncodeToString(sum[:]))
		fmt.Fprintf(&b, "P:%s\nV:%s\nA:%s\nS:%d\nI:%d\n", p.name, p.version, p.arch, size*10/24, size)
		fmt.Fprintf(&b, "T:%s\nU:%s\nL:%s\no:%s\n", p.description, p.url, p.license, p.origin)
		fmt.Fprintf(&b, "t:%d\n", imageTime.Unix())
		dir := ""
		for _, f := range p.files {
			if f.dir != dir {
				dir = f.dir
				fmt.Fprintf(&b, "F:%s\n", dir)
			}
			fsum := sha1.Sum([]byte(f.dir + "/" + f.name))
			fmt.Fprintf(&b, "R:%s\na:0:0:%o\nZ:Q1%s\n", f.name, f.mode, base64.StdEncoding.EncodeToString(fsum[:]))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// writeBigLayer streams the large layer (tar → gzip) into blobDir and renames it to its digest.
func writeBigLayer(blobDir string, spec bigSpec) (info layerInfo, err error) {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], spec.seed)
	seed = sha256.Sum256(append([]byte("labfixtures image seed "), seed[:8]...))
	src := rand.NewChaCha8(seed)
	rng := rand.New(src)
	pkgs := planBigImage(spec, rng)

	tmp, err := os.CreateTemp(blobDir, ".layer-*.tmp")
	if err != nil {
		return info, fmt.Errorf("image: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	gzHash := sha256.New()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	gzCount := &countWriter{w: io.MultiWriter(bw, gzHash)}
	// Default level, as image builders use; the random parts do not compress at any level.
	zw, err := gzip.NewWriterLevel(gzCount, gzip.DefaultCompression)
	if err != nil {
		return info, err
	}
	tarHash := sha256.New()
	tarCount := &countWriter{w: io.MultiWriter(zw, tarHash)}
	tw := tar.NewWriter(tarCount)

	dirs := []string{"etc/", "lib/", "lib/apk/", "lib/apk/db/", "usr/", "usr/bin/", "usr/lib/", "usr/share/", "usr/share/doc/"}
	for _, p := range pkgs {
		dirs = append(dirs, "usr/lib/"+p.name+"/", "usr/share/doc/"+p.name+"/")
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: imageTime, Format: tar.FormatUSTAR}); err != nil {
			return info, fmt.Errorf("image: %w", err)
		}
	}
	files := 0
	writeText := func(name, body string) error {
		files++
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: imageTime, Format: tar.FormatUSTAR}); err != nil {
			return err
		}
		_, err := io.WriteString(tw, body)
		return err
	}
	for _, f := range [][2]string{{"etc/alpine-release", "3.10.2\n"}, {"etc/os-release", osRelease}, {"lib/apk/db/installed", bigApkInstalled(pkgs)}} {
		if err := writeText(f[0], f[1]); err != nil {
			return info, fmt.Errorf("image: %w", err)
		}
	}
	buf := make([]byte, 64<<10)
	zeros := make([]byte, 64<<10)
	for _, p := range pkgs {
		for _, f := range p.files {
			name := f.dir + "/" + f.name
			if f.text {
				var b strings.Builder
				fmt.Fprintf(&b, "%s %s\n\n", p.name, p.version)
				for int64(b.Len()) < f.random {
					b.WriteString(readmeWords[rng.IntN(len(readmeWords))])
					if rng.IntN(12) == 0 {
						b.WriteString(".\n")
					} else {
						b.WriteString(" ")
					}
				}
				if err := writeText(name, b.String()); err != nil {
					return info, fmt.Errorf("image: %w", err)
				}
				continue
			}
			files++
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: f.mode, Size: f.random + f.padding, ModTime: imageTime, Format: tar.FormatUSTAR}); err != nil {
				return info, fmt.Errorf("image: %w", err)
			}
			for left := f.random; left > 0; {
				n := min(left, int64(len(buf)))
				_, _ = src.Read(buf[:n]) // ChaCha8.Read never fails
				if _, err := tw.Write(buf[:n]); err != nil {
					return info, fmt.Errorf("image: write layer: %w", err)
				}
				left -= n
			}
			for left := f.padding; left > 0; {
				n := min(left, int64(len(zeros)))
				if _, err := tw.Write(zeros[:n]); err != nil {
					return info, fmt.Errorf("image: write layer: %w", err)
				}
				left -= n
			}
		}
	}
	if err := tw.Close(); err != nil {
		return info, fmt.Errorf("image: write layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return info, fmt.Errorf("image: write layer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return info, fmt.Errorf("image: write layer: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return info, fmt.Errorf("image: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return info, fmt.Errorf("image: write layer: %w", err)
	}
	digest := "sha256:" + hex.EncodeToString(gzHash.Sum(nil))
	if err := os.Rename(tmp.Name(), filepath.Join(blobDir, strings.TrimPrefix(digest, "sha256:"))); err != nil {
		return info, fmt.Errorf("image: %w", err)
	}
	return layerInfo{
		digest: digest, diffID: "sha256:" + hex.EncodeToString(tarHash.Sum(nil)), size: gzCount.n, tarSize: tarCount.n,
		files: files, packages: len(pkgs),
		history: fmt.Sprintf("labfixtures image --packages %d --layer-mb %d --seed %d (alpine 3.10.2 test fixture)", spec.packages, spec.layerBytes/1_000_000, spec.seed),
	}, nil
}
