package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aquasecurity/trivy-db/pkg/metadata"
)

// Media types and names that Trivy expects of a vulnerability DB artifact
// (the same layout as ghcr.io/aquasecurity/trivy-db:2).
const (
	mediaTypeTrivyConfig  = "application/vnd.aquasec.trivy.config.v1+json"
	mediaTypeTrivyDBLayer = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
	annotationTitle       = "org.opencontainers.image.title"
	dbArchiveName         = "db.tar.gz"
	metadataFileName      = "metadata.json"
	defaultPushTimeout    = 60 * time.Second
)

// Registry reference grammar (distribution/reference): path components and tags.
var (
	repoComponentRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	tagRe           = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

type dbRef struct {
	host string // as written in --to and sent in the Host header: 127.0.0.1:PORT, localhost:PORT or [::1]:PORT
	repo string
	tag  string
}

func (r dbRef) String() string { return r.host + "/" + r.repo + ":" + r.tag }

func runDBPush(args []string) error {
	fs := newFlagSet("dbpush")
	dir := fs.String("db", "", "directory holding trivy.db and metadata.json (required)")
	to := fs.String("to", "", "destination 127.0.0.1:PORT/REPO:TAG (also localhost:PORT or [::1]:PORT) (required)")
	timeout := fs.Duration("timeout", defaultPushTimeout, "timeout for each HTTP call to the registry")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("dbpush: --db is required")
	}
	if *to == "" {
		return errors.New("dbpush: --to is required")
	}
	if *timeout <= 0 {
		return fmt.Errorf("dbpush: --timeout must be positive, got %s", *timeout)
	}
	ref, err := parseDBRef(*to)
	if err != nil {
		return fmt.Errorf("dbpush: %w", err)
	}

	archive, err := buildDBArchive(*dir)
	if err != nil {
		return fmt.Errorf("dbpush: %w", err)
	}
	defer os.Remove(archive.path)

	cfg := []byte("{}")
	cfgDesc := descriptor{MediaType: mediaTypeTrivyConfig, Digest: digestOf(cfg), Size: int64(len(cfg))}
	layerDesc := descriptor{
		MediaType:   mediaTypeTrivyDBLayer,
		Digest:      archive.digest,
		Size:        archive.size,
		Annotations: map[string]string{annotationTitle: dbArchiveName},
	}
	manifestJSON, err := json.Marshal(artifactManifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		ArtifactType:  mediaTypeTrivyConfig,
		Config:        cfgDesc,
		Layers:        []descriptor{layerDesc},
	})
	if err != nil {
		return fmt.Errorf("dbpush: encode manifest: %w", err)
	}

	rc := newRegistryClient(ref, *timeout)
	if err := rc.ping(); err != nil {
		return fmt.Errorf("dbpush: %w", err)
	}
	if err := rc.pushBlob(cfgDesc.Digest, cfgDesc.Size, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(cfg)), nil
	}); err != nil {
		return fmt.Errorf("dbpush: config blob: %w", err)
	}
	if err := rc.pushBlob(layerDesc.Digest, layerDesc.Size, func() (io.ReadCloser, error) {
		return os.Open(archive.path)
	}); err != nil {
		return fmt.Errorf("dbpush: %s blob: %w", dbArchiveName, err)
	}
	manifestDigest := digestOf(manifestJSON)
	if err := rc.putManifest(manifestJSON, manifestDigest); err != nil {
		return fmt.Errorf("dbpush: manifest: %w", err)
	}
	fmt.Fprintf(os.Stdout, "pushed %s@%s (%s %d bytes, %s)\n", ref, manifestDigest, dbArchiveName, archive.size, archive.digest)
	return nil
}

// artifactManifest is an OCI image manifest used as an artifact. artifactType
// (OCI 1.1) repeats the config media type; registries that predate it ignore it.
type artifactManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	ArtifactType  string       `json:"artifactType,omitempty"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

// parseDBRef parses HOST:PORT/REPO:TAG and accepts only loopback hosts.
func parseDBRef(s string) (dbRef, error) {
	if strings.Contains(s, "://") {
		return dbRef{}, fmt.Errorf("--to %q: give HOST:PORT/REPO:TAG without a scheme", s)
	}
	if strings.Contains(s, "@") {
		return dbRef{}, fmt.Errorf("--to %q: digests are not supported, give a tag", s)
	}
	slash := strings.Index(s, "/")
	if slash < 0 {
		return dbRef{}, fmt.Errorf("--to %q: want HOST:PORT/REPO:TAG", s)
	}
	host, rest := s[:slash], s[slash+1:]
	if err := checkLoopbackHostPort(host); err != nil {
		return dbRef{}, fmt.Errorf("--to %q: %w", s, err)
	}
	colon := strings.LastIndex(rest, ":")
	if colon < 0 {
		return dbRef{}, fmt.Errorf("--to %q: missing :TAG", s)
	}
	repo, tag := rest[:colon], rest[colon+1:]
	if !tagRe.MatchString(tag) {
		return dbRef{}, fmt.Errorf("--to %q: invalid tag %q", s, tag)
	}
	if repo == "" {
		return dbRef{}, fmt.Errorf("--to %q: missing repository", s)
	}
	for _, c := range strings.Split(repo, "/") {
		if !repoComponentRe.MatchString(c) {
			return dbRef{}, fmt.Errorf("--to %q: invalid repository %q (lowercase letters, digits and . _ - separated by /)", s, repo)
		}
	}
	return dbRef{host: host, repo: repo, tag: tag}, nil
}

// checkLoopbackHostPort accepts exactly 127.0.0.1:PORT, localhost:PORT and [::1]:PORT.
func checkLoopbackHostPort(hostport string) error {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("host %q: want 127.0.0.1:PORT, localhost:PORT or [::1]:PORT", hostport)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
		return fmt.Errorf("host %q: invalid port %q", hostport, p)
	}
	switch strings.ToLower(h) {
	case "127.0.0.1", "localhost", "::1":
		return nil
	}
	return fmt.Errorf("host %q refused: only 127.0.0.1, localhost and [::1] are allowed", hostport)
}

// loopbackDial connects only to literal loopback addresses. "localhost" is mapped
// to 127.0.0.1 and then ::1 without asking any resolver, so no DNS traffic either.
func loopbackDial(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var ips []string
		switch strings.ToLower(h) {
		case "localhost":
			ips = []string{"127.0.0.1", "::1"}
		case "127.0.0.1", "::1":
			ips = []string{h}
		default:
			return nil, fmt.Errorf("refusing to connect to %s: not a loopback address", addr)
		}
		var lastErr error
		for _, ip := range ips {
			if !net.ParseIP(ip).IsLoopback() {
				return nil, fmt.Errorf("refusing to connect to %s: not a loopback address", ip)
			}
			c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, p))
			if err == nil {
				return c, nil
			}
			lastErr = err
		}
		return nil, lastErr
	}
}

type registryClient struct {
	ref     dbRef
	base    *url.URL
	client  *http.Client
	timeout time.Duration
}

func newRegistryClient(ref dbRef, timeout time.Duration) *registryClient {
	tr := &http.Transport{
		Proxy:                 nil, // never through a proxy, whatever HTTP_PROXY says
		DialContext:           loopbackDial(timeout),
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          2,
		IdleConnTimeout:       timeout,
		DisableCompression:    true,
	}
	return &registryClient{
		ref:  ref,
		base: &url.URL{Scheme: "http", Host: ref.host},
		client: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			// Registries may redirect blob requests to storage elsewhere; never follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout: timeout,
	}
}

// do sends one request with its own deadline and returns the status, headers
// and up to 4 KiB of body (enough for registry error JSON).
func (c *registryClient) do(method string, u *url.URL, hdr http.Header, body io.ReadCloser, size int64) (int, http.Header, []byte, error) {
	if u.Scheme != "http" || !strings.EqualFold(u.Host, c.ref.host) {
		if body != nil {
			body.Close()
		}
		return 0, nil, nil, fmt.Errorf("refusing %s %s: only %s is allowed", method, redact(u), c.ref.host)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		if body != nil {
			body.Close()
		}
		return 0, nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "labfixtures")
	if body != nil {
		req.ContentLength = size
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return 0, nil, nil, fmt.Errorf("%s %s: no answer within %s (--timeout)", method, redact(u), c.timeout)
		}
		return 0, nil, nil, fmt.Errorf("%s %s: %v", method, redact(u), unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	return resp.StatusCode, resp.Header, data, nil
}

func (c *registryClient) url(path string) *url.URL {
	return c.base.ResolveReference(&url.URL{Path: path})
}

func (c *registryClient) ping() error {
	u := c.url("/v2/")
	status, _, body, err := c.do(http.MethodGet, u, nil, nil, 0)
	if err != nil {
		return err
	}
	switch status {
	case http.StatusOK:
		return nil
	case http.StatusUnauthorized:
		return fmt.Errorf("registry %s wants authentication, which labfixtures does not support", c.ref.host)
	default:
		return statusError("GET", u, status, body)
	}
}

// pushBlob uploads a blob unless the registry already has it: HEAD, then
// POST /blobs/uploads/ and a single (monolithic) PUT <location>?digest=.
func (c *registryClient) pushBlob(digest string, size int64, open func() (io.ReadCloser, error)) error {
	head := c.url("/v2/" + c.ref.repo + "/blobs/" + digest)
	status, hdr, body, err := c.do(http.MethodHead, head, nil, nil, 0)
	if err != nil {
		return err
	}
	switch {
	case status == http.StatusOK:
		return nil // already there
	case status == http.StatusNotFound:
	case status/100 == 3:
		return fmt.Errorf("HEAD %s: HTTP %d redirect to %q, which labfixtures does not follow", head.Path, status, hdr.Get("Location"))
	default:
		return statusError("HEAD", head, status, body)
	}

	start := c.url("/v2/" + c.ref.repo + "/blobs/uploads/")
	status, hdr, body, err = c.do(http.MethodPost, start, nil, http.NoBody, 0)
	if err != nil {
		return err
	}
	if status != http.StatusAccepted {
		return statusError("POST", start, status, body)
	}
	loc := hdr.Get("Location")
	if loc == "" {
		return fmt.Errorf("POST %s: 202 without a Location header", start.Path)
	}
	lu, err := url.Parse(loc)
	if err != nil {
		return fmt.Errorf("POST %s: bad Location %q: %v", start.Path, loc, err)
	}
	put := start.ResolveReference(lu)
	if put.Scheme != "http" || !strings.EqualFold(put.Host, c.ref.host) {
		return fmt.Errorf("registry sent upload location %s, which is not %s; refusing", redact(put), c.ref.host)
	}
	q := put.Query()
	q.Set("digest", digest)
	put.RawQuery = q.Encode()

	rd, err := open()
	if err != nil {
		return err
	}
	status, hdr, body, err = c.do(http.MethodPut, put, http.Header{"Content-Type": {"application/octet-stream"}}, rd, size)
	if err != nil {
		return err
	}
	if status != http.StatusCreated {
		return statusError("PUT", put, status, body)
	}
	if got := hdr.Get("Docker-Content-Digest"); got != "" && got != digest {
		return fmt.Errorf("registry stored the blob as %s, expected %s", got, digest)
	}
	return nil
}

func (c *registryClient) putManifest(manifest []byte, digest string) error {
	u := c.url("/v2/" + c.ref.repo + "/manifests/" + c.ref.tag)
	status, hdr, body, err := c.do(http.MethodPut, u, http.Header{"Content-Type": {mediaTypeManifest}},
		io.NopCloser(bytes.NewReader(manifest)), int64(len(manifest)))
	if err != nil {
		return err
	}
	if status != http.StatusCreated {
		return statusError("PUT", u, status, body)
	}
	if got := hdr.Get("Docker-Content-Digest"); got != "" && got != digest {
		return fmt.Errorf("registry stored the manifest as %s, expected %s", got, digest)
	}
	return nil
}

// statusError turns a registry response into one line, using the first entry of
// the registry's {"errors":[{"code","message"}]} body when there is one.
func statusError(method string, u *url.URL, status int, body []byte) error {
	var e struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	detail := ""
	if json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
		detail = ": " + e.Errors[0].Code
		if e.Errors[0].Message != "" {
			detail += " (" + e.Errors[0].Message + ")"
		}
	} else if s := strings.TrimSpace(string(body)); s != "" {
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		detail = ": " + s
	}
	return fmt.Errorf("%s %s: HTTP %d%s", method, u.Path, status, detail)
}

// redact drops the query (upload URLs carry opaque state) from URLs in messages.
func redact(u *url.URL) string {
	v := *u
	v.RawQuery = ""
	return v.String()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

type dbArchive struct {
	path   string
	digest string
	size   int64
}

// buildDBArchive writes DIR/trivy.db and DIR/metadata.json into a gzip tar in a
// temporary file and returns its path, sha256 digest and size. The caller removes it.
func buildDBArchive(dir string) (a dbArchive, err error) {
	if _, err := metadata.NewClient(dir).Get(); err != nil {
		return a, fmt.Errorf("%s is not readable JSON metadata: %v", filepath.Join(dir, metadataFileName), err)
	}
	tmp, err := os.CreateTemp("", "labfixtures-db-*.tar.gz")
	if err != nil {
		return a, fmt.Errorf("create temp file: %w", err)
	}
	defer func() {
		if cerr := tmp.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("write %s: %w", tmp.Name(), cerr)
		}
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()

	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return a, err
	}
	tw := tar.NewWriter(zw)
	for _, name := range []string{dbFileName, metadataFileName} {
		if err := addFileToTar(tw, filepath.Join(dir, name), name); err != nil {
			return a, err
		}
	}
	if err := tw.Close(); err != nil {
		return a, fmt.Errorf("write %s: %w", dbArchiveName, err)
	}
	if err := zw.Close(); err != nil {
		return a, fmt.Errorf("write %s: %w", dbArchiveName, err)
	}
	return dbArchive{path: tmp.Name(), digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), size: cw.n}, nil
}

func addFileToTar(tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     0o644,
		Size:     st.Size(),
		ModTime:  st.ModTime().UTC().Truncate(time.Second),
	}); err != nil {
		return fmt.Errorf("tar %s: %w", name, err)
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return fmt.Errorf("tar %s: %w", name, err)
	}
	if n != st.Size() {
		return fmt.Errorf("%s changed size while being archived", path)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
