// Command labfixtures builds test fixtures for labctl's Trivy server tests:
//
//	labfixtures db    --out DIR --fixtures FILE[,FILE...] [--updated-at T] [--next-update T] [--downloaded-at T]
//	labfixtures image --out OCI_DIR [--tag 1] [--packages 100] [--layer-mb 38] [--seed 1]
//	labfixtures dbpush --db DIR --to 127.0.0.1:PORT/REPO:TAG [--timeout 60s]
//
// "db" writes DIR/trivy.db (bbolt, loaded from bolt-fixtures YAML) and DIR/metadata.json.
// "image" writes a tiny, deterministic Alpine 3.10.2 OCI image layout; with --packages,
// --layer-mb or --seed, a large one the size of a real base image (ubi9/ubi-minimal:9.4).
// "dbpush" publishes DIR/trivy.db + DIR/metadata.json as a Trivy DB OCI artifact to a
// plain-HTTP registry on loopback (127.0.0.1, localhost or [::1] only).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `usage:
  labfixtures db --out DIR --fixtures FILE[,FILE...] [--updated-at RFC3339] [--next-update RFC3339] [--downloaded-at RFC3339]
  labfixtures image --out OCI_DIR [--tag TAG] [--packages N] [--layer-mb MB] [--seed N]
  labfixtures dbpush --db DIR --to 127.0.0.1:PORT/REPO:TAG [--timeout DURATION]
`

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(os.Stdout, usage)
			return
		}
		// Always exactly one line on stderr.
		msg := strings.TrimRight(strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ; ")), " "), " ;")
		fmt.Fprintf(os.Stderr, "labfixtures: %s\n", msg)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("missing subcommand (db, image or dbpush); run 'labfixtures help'")
	}
	switch args[0] {
	case "db":
		return runDB(args[1:])
	case "image":
		return runImage(args[1:])
	case "dbpush":
		return runDBPush(args[1:])
	case "help", "-h", "--help", "-help":
		return flag.ErrHelp
	default:
		return fmt.Errorf("unknown subcommand %q (want db, image or dbpush)", args[0])
	}
}

// newFlagSet returns a FlagSet that never prints on its own: errors come back to
// run() and are reported as a single line.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}
