package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	fixtures "github.com/aquasecurity/bolt-fixtures"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	bolt "go.etcd.io/bbolt"
)

const (
	dbFileName      = "trivy.db"
	dbSchemaVersion = 2 // trivy-db schema version expected by Trivy v0.74.0
)

func runDB(args []string) error {
	fs := newFlagSet("db")
	out := fs.String("out", "", "output directory for trivy.db and metadata.json (required)")
	fixtureList := fs.String("fixtures", "", "comma-separated bolt-fixtures YAML files (required)")
	updatedAt := fs.String("updated-at", "", "metadata UpdatedAt, RFC3339 (default now)")
	nextUpdate := fs.String("next-update", "", "metadata NextUpdate, RFC3339 (default now+12h)")
	downloadedAt := fs.String("downloaded-at", "", "metadata DownloadedAt, RFC3339 (default now)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	if *out == "" {
		return errors.New("db: --out is required")
	}
	files, err := splitFixtures(*fixtureList)
	if err != nil {
		return err
	}

	now := time.Now().UTC().Truncate(time.Second)
	meta := metadata.Metadata{Version: dbSchemaVersion}
	if meta.UpdatedAt, err = parseTime("updated-at", *updatedAt, now); err != nil {
		return err
	}
	if meta.NextUpdate, err = parseTime("next-update", *nextUpdate, now.Add(12*time.Hour)); err != nil {
		return err
	}
	if meta.DownloadedAt, err = parseTime("downloaded-at", *downloadedAt, now); err != nil {
		return err
	}

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("db: create output directory: %w", err)
	}
	if err := buildDB(*out, files); err != nil {
		return err
	}
	if err := metadata.NewClient(*out).Update(meta); err != nil {
		return fmt.Errorf("db: write metadata.json: %w", err)
	}
	return nil
}

func splitFixtures(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("db: --fixtures is required")
	}
	var files []string
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			return nil, fmt.Errorf("db: empty entry in --fixtures %q", list)
		}
		st, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("db: fixture file: %w", err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("db: fixture %s is not a regular file", f)
		}
		files = append(files, f)
	}
	return files, nil
}

func parseTime(name, value string, def time.Time) (time.Time, error) {
	if value == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339, value)
	if err != nil {
		return time.Time{}, fmt.Errorf("db: --%s: %q is not RFC3339 (e.g. 2024-01-02T03:04:05Z)", name, value)
	}
	return t, nil
}

// buildDB loads the fixtures into a fresh bbolt file next to the target and then
// renames it over DIR/trivy.db. A process that still has the old file open (and
// locked) keeps its old copy; bbolt's default open would otherwise block on that lock.
func buildDB(dir string, files []string) (err error) {
	tmp, err := os.CreateTemp(dir, ".trivy.db.tmp-*")
	if err != nil {
		return fmt.Errorf("db: create temp file: %w", err)
	}
	tmpPath := tmp.Name()
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("db: create temp file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmpPath)
		}
	}()

	loader, err := fixtures.New(tmpPath, files)
	if err != nil {
		return fmt.Errorf("db: open bbolt file: %w", err)
	}
	if err := loader.Load(); err != nil {
		_ = loader.Close()
		return fmt.Errorf("db: load fixtures: %w", err)
	}
	buckets := 0
	if err := loader.DB().View(func(tx *bolt.Tx) error {
		return tx.ForEach(func([]byte, *bolt.Bucket) error { buckets++; return nil })
	}); err != nil {
		_ = loader.Close()
		return fmt.Errorf("db: inspect database: %w", err)
	}
	if err := loader.Close(); err != nil {
		return fmt.Errorf("db: close database: %w", err)
	}
	if buckets == 0 {
		return fmt.Errorf("db: fixtures %s contain no buckets", strings.Join(files, ","))
	}

	if err := os.Chmod(tmpPath, 0o644); err != nil {
		return fmt.Errorf("db: chmod: %w", err)
	}
	if err := os.Rename(tmpPath, filepath.Join(dir, dbFileName)); err != nil {
		return fmt.Errorf("db: install trivy.db: %w", err)
	}
	return nil
}
