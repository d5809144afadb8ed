package storage

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/keygate/keygate/authz"
)

// Keyring holds the keys secrets are sealed with at rest (AES-256-GCM).
// The first key seals; every key opens, so keys rotate: put a new key
// first, keep the old ones until `keygate secrets rotate` has sealed
// everything with the new one, then drop them.
//
// Its text form, as KEYGATE_ENCRYPTION_KEY holds it, is one or more
// ID:KEY entries separated by commas or new lines: ID is 1 to 32 of
// A-Z a-z 0-9 _ - . and KEY the standard base64 of 32 random bytes
// (`keygate secrets generate-key` prints one).
type Keyring struct {
	keys []sealKey
}

type sealKey struct {
	id   string
	aead cipher.AEAD
}

// EncryptionKeySetting names the setting that holds the keyring.
const EncryptionKeySetting = "KEYGATE_ENCRYPTION_KEY"

// ParseKeyring reads a keyring's text form. Errors never quote a key.
func ParseKeyring(text string) (*Keyring, error) {
	k := &Keyring{}
	seen := map[string]bool{}
	fields := strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' })
	for i, f := range fields {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		id, b64, ok := strings.Cut(f, ":")
		if !ok || !validKeyID(id) {
			return nil, authz.Errorf(authz.EINVALID, "%s: entry %d is not ID:BASE64KEY with an ID of 1 to 32 of A-Z a-z 0-9 _ - .", EncryptionKeySetting, i+1)
		}
		if seen[id] {
			return nil, authz.Errorf(authz.EINVALID, "%s: key id %q is given twice", EncryptionKeySetting, id)
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil || len(raw) != 32 {
			return nil, authz.Errorf(authz.EINVALID, "%s: key %q must be the base64 of 32 bytes (AES-256)", EncryptionKeySetting, id)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: key %q: %w", EncryptionKeySetting, id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%s: key %q: %w", EncryptionKeySetting, id, err)
		}
		seen[id] = true
		k.keys = append(k.keys, sealKey{id: id, aead: aead})
	}
	if len(k.keys) == 0 {
		return nil, authz.Errorf(authz.EINVALID, "%s holds no key", EncryptionKeySetting)
	}
	return k, nil
}

// GenerateKeyEntry returns a new keyring entry ID:KEY with 32 random bytes.
func GenerateKeyEntry(id string) (string, error) {
	if !validKeyID(id) {
		return "", authz.Errorf(authz.EINVALID, "a key id is 1 to 32 of A-Z a-z 0-9 _ - .")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	return id + ":" + base64.StdEncoding.EncodeToString(raw[:]), nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	return strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == ""
}

// CurrentID is the id of the key that seals.
func (k *Keyring) CurrentID() string { return k.keys[0].id }

// seal encrypts plaintext with the current key, bound to aad (what the
// secret belongs to, so a sealed value moved to another row does not open),
// and returns the key id and base64 of nonce and ciphertext.
func (k *Keyring) seal(plaintext, aad []byte) (string, string, error) {
	key := k.keys[0]
	nonce := make([]byte, key.aead.NonceSize(), key.aead.NonceSize()+len(plaintext)+key.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", "", err
	}
	return key.id, base64.StdEncoding.EncodeToString(key.aead.Seal(nonce, nonce, plaintext, aad)), nil
}

// open decrypts what seal returned. Errors name the key id, never a value.
func (k *Keyring) open(id, sealed string, aad []byte) ([]byte, error) {
	for _, key := range k.keys {
		if key.id != id {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(sealed)
		if err != nil || len(raw) < key.aead.NonceSize() {
			return nil, fmt.Errorf("a secret sealed with key %q is damaged", id)
		}
		n := key.aead.NonceSize()
		plain, err := key.aead.Open(nil, raw[:n], raw[n:], aad)
		if err != nil {
			return nil, fmt.Errorf("a secret sealed with key %q does not open: the key is not the one it was sealed with, or the value was changed", id)
		}
		return plain, nil
	}
	return nil, fmt.Errorf("a secret is sealed with key %q, which %s does not hold; add that key after the current one", id, EncryptionKeySetting)
}
