// Command verifycheckpoint checks the service's checkpoints, proofs and witness cosignatures with
// code nobody on the project wrote: Go's golang.org/x/mod/sumdb/note (signed notes) and
// golang.org/x/mod/sumdb/tlog (RFC 6962 inclusion and consistency proofs). Only the cosignature
// verifier is ours: note.NewVerifier refuses key type 0x04 (C2SP tlog-cosignature v1), so
// cosignatureVerifier below implements note.Verifier for it, and note.Open does the rest.
//
// Build (Debian golang-go, golang-golang-x-mod-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o verifycheckpoint ./tests/go/verifycheckpoint
//
// Usage: verifycheckpoint INPUT.json, where INPUT is
//
//	{"log_vkey": "...", "checkpoint": "<signed note, cosignature lines appended>",
//	 "witness_vkeys": ["..."], "inclusion": [{"index": 3, "leaf_b64": "...", "proof": ["b64", ...]}],
//	 "consistency": {"old_size": 5, "old_root": "b64", "proof": ["b64", ...]}}
//
// It prints one line per check and exits 0, or prints the failure and exits 1.
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type input struct {
	LogVkey      string   `json:"log_vkey"`
	Checkpoint   string   `json:"checkpoint"`
	WitnessVkeys []string `json:"witness_vkeys"`
	Inclusion    []struct {
		Index   int64    `json:"index"`
		LeafB64 string   `json:"leaf_b64"`
		Proof   []string `json:"proof"`
	} `json:"inclusion"`
	Consistency *struct {
		OldSize int64    `json:"old_size"`
		OldRoot string   `json:"old_root"`
		Proof   []string `json:"proof"`
	} `json:"consistency"`
}

// cosignatureVerifier verifies C2SP cosignature/v1 (Ed25519) signatures for note.Open.
type cosignatureVerifier struct {
	name    string
	keyHash uint32
	key     ed25519.PublicKey
	times   *[]string
}

func (v cosignatureVerifier) Name() string    { return v.name }
func (v cosignatureVerifier) KeyHash() uint32 { return v.keyHash }

// Verify checks sig = u64 big-endian time || Ed25519 over "cosignature/v1\ntime <time>\n" || msg.
func (v cosignatureVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	timestamp := binary.BigEndian.Uint64(sig[:8])
	if timestamp >= 1<<63 {
		return false
	}
	signed := append([]byte("cosignature/v1\ntime "+strconv.FormatUint(timestamp, 10)+"\n"), msg...)
	if !ed25519.Verify(v.key, signed, sig[8:]) {
		return false
	}
	when := time.Unix(int64(timestamp), 0).UTC().Format(time.RFC3339)
	*v.times = append(*v.times, v.name+" at "+when)
	return true
}

func newCosignatureVerifier(vkey string, times *[]string) (note.Verifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("witness vkey is not <name>+<key id>+<key>")
	}
	name, hashHex, keyB64 := parts[0], parts[1], parts[2]
	material, err := base64.StdEncoding.DecodeString(keyB64)
	if err != nil || len(material) != 1+ed25519.PublicKeySize || material[0] != 0x04 {
		return nil, errors.New("witness vkey is not an Ed25519 cosignature/v1 key (type 0x04)")
	}
	keyHash, err := strconv.ParseUint(hashHex, 16, 32)
	if err != nil || len(hashHex) != 8 {
		return nil, errors.New("witness vkey key id is not 8 hex digits")
	}
	sum := sha256.Sum256(append(append([]byte(name), '\n'), material...))
	if binary.BigEndian.Uint32(sum[:4]) != uint32(keyHash) {
		return nil, errors.New("witness vkey key id does not match SHA-256(name || 0x0A || 0x04 || key)")
	}
	return cosignatureVerifier{name: name, keyHash: uint32(keyHash), key: material[1:], times: times}, nil
}

func hashes(encoded []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(encoded))
	for i, text := range encoded {
		raw, err := base64.StdEncoding.DecodeString(text)
		if err != nil || len(raw) != tlog.HashSize {
			return nil, fmt.Errorf("proof hash %d is not 32 bytes of base64", i)
		}
		copy(out[i][:], raw)
	}
	return out, nil
}

func run(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var in input
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	logVerifier, err := note.NewVerifier(in.LogVkey)
	if err != nil {
		return fmt.Errorf("log vkey: %v", err)
	}
	verifiers := []note.Verifier{logVerifier}
	var times []string
	for _, vkey := range in.WitnessVkeys {
		if _, err := note.NewVerifier(vkey); err == nil {
			return errors.New("note.NewVerifier accepted a cosignature key: expected it to refuse type 0x04")
		}
		verifier, err := newCosignatureVerifier(vkey, &times)
		if err != nil {
			return err
		}
		verifiers = append(verifiers, verifier)
	}
	opened, err := note.Open([]byte(in.Checkpoint), note.VerifierList(verifiers...))
	if err != nil {
		return fmt.Errorf("note.Open: %v", err)
	}
	logSigned := false
	for _, sig := range opened.Sigs {
		if sig.Name == logVerifier.Name() && sig.Hash == logVerifier.KeyHash() {
			logSigned = true
		}
	}
	if !logSigned {
		return errors.New("the checkpoint is not signed by the log key")
	}
	fmt.Printf("ok note: signed by %s\n", logVerifier.Name())
	if len(in.WitnessVkeys) > 0 {
		if len(times) != len(in.WitnessVkeys) {
			return fmt.Errorf("%d of %d witnesses cosigned", len(times), len(in.WitnessVkeys))
		}
		fmt.Printf("ok cosignatures: %s\n", strings.Join(times, ", "))
	}
	lines := strings.Split(opened.Text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" {
		return errors.New("the checkpoint text has no origin, size and root lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || strconv.FormatInt(size, 10) != lines[1] {
		return errors.New("the checkpoint size is not a canonical decimal")
	}
	rootRaw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootRaw) != tlog.HashSize {
		return errors.New("the checkpoint root is not 32 bytes of base64")
	}
	var root tlog.Hash
	copy(root[:], rootRaw)
	fmt.Printf("ok checkpoint: %s size %d\n", lines[0], size)
	for _, item := range in.Inclusion {
		leaf, err := base64.StdEncoding.DecodeString(item.LeafB64)
		if err != nil {
			return err
		}
		proof, err := hashes(item.Proof)
		if err != nil {
			return err
		}
		if err := tlog.CheckRecord(proof, size, root, item.Index, tlog.RecordHash(leaf)); err != nil {
			return fmt.Errorf("inclusion of leaf %d: %v", item.Index, err)
		}
	}
	if len(in.Inclusion) > 0 {
		fmt.Printf("ok inclusion: %d proofs (tlog.CheckRecord)\n", len(in.Inclusion))
	}
	if in.Consistency != nil {
		proof, err := hashes(in.Consistency.Proof)
		if err != nil {
			return err
		}
		oldRoot, err := hashes([]string{in.Consistency.OldRoot})
		if err != nil {
			return err
		}
		if err := tlog.CheckTree(proof, size, root, in.Consistency.OldSize, oldRoot[0]); err != nil {
			return fmt.Errorf("consistency from %d: %v", in.Consistency.OldSize, err)
		}
		fmt.Printf("ok consistency: from %d to %d (tlog.CheckTree)\n", in.Consistency.OldSize, size)
	}
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: verifycheckpoint INPUT.json")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Printf("FAIL %v\n", err)
		os.Exit(1)
	}
}
