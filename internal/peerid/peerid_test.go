package peerid

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"testing"
)

// The raft transport's keys as consensus derived them before this package
// existed: a change here locks upgraded voters out of the old ones.
func TestKeyIsStable(t *testing.T) {
	k, err := Key(bytes.Repeat([]byte{1}, 32), "tandem/consensus-tls/v2 voter", "a")
	if err != nil {
		t.Fatal(err)
	}
	got := hex.EncodeToString(k.Public().(ed25519.PublicKey))
	if want := "5b035ba39ac9dec58875728aa6f138a977fe6663ea4ac8a72dcba9acda0a5cb8"; got != want {
		t.Fatalf("derived public key %s, want %s", got, want)
	}
}

func TestMemberOf(t *testing.T) {
	k := bytes.Repeat([]byte{1}, 32)
	a, err := New(k, "test", "a", []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New(k, "test", "b", []string{"a", "b"})
	if name, err := b.MemberOf(a.Certificate()); err != nil || name != "a" {
		t.Fatalf("b reads a's certificate as %q, %v", name, err)
	}
	if _, err := a.MemberOf(a.Certificate()); !IsIdentity(err) {
		t.Fatalf("a's own certificate from a peer: %v, want an identity refusal", err)
	}
	other, _ := New(k, "other transport", "a", []string{"a", "b"})
	if _, err := b.MemberOf(other.Certificate()); !IsIdentity(err) {
		t.Fatalf("a certificate of another domain: %v, want an identity refusal", err)
	}
	wrongKey, _ := New(bytes.Repeat([]byte{2}, 32), "test", "a", []string{"a", "b"})
	if _, err := b.MemberOf(wrongKey.Certificate()); !IsIdentity(err) {
		t.Fatalf("a certificate under another cluster key: %v, want an identity refusal", err)
	} else if name, ok := IsForeignKey(err); !ok || name != "a" {
		t.Fatalf("a certificate under another cluster key: %v, want a foreign key refusal naming a", err)
	}
	if _, err := New(k, "test", "c", []string{"a", "b"}); err == nil {
		t.Fatal("New accepted a self that is not a member")
	}
}
