package authz

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// PolicySet is one version of the policies keygate serves: the Rego
// modules, the Rego tests that must pass before they go live, and the data
// document the rules may read. A policy folder and an OPA bundle read into
// the same shape, by the same rules (those of `opa build -b`): every .rego
// file of the tree is a module, every data.json, data.yaml or data.yml is
// data at the path of its folder.
type PolicySet struct {
	// Modules are the policy modules by path (authz.rego, sub/x.rego),
	// tests left out.
	Modules map[string]string
	// Tests are the modules whose name ends in _test.rego.
	Tests map[string]string
	// Data is the data document; nil is empty.
	Data map[string]any
	// ManifestRevision is the revision a bundle's .manifest names, "" when
	// none.
	ManifestRevision string

	// versions are the Rego versions a bundle's manifest gives modules
	// other than v1; every other module is Rego v1.
	versions map[string]ast.RegoVersion
}

// MaxPolicyFileBytes bounds one file of a policy folder or bundle.
const MaxPolicyFileBytes = 8 << 20

// ReadPolicyFS reads a policy folder (os.DirFS(dir), or the embedded
// policies): every .rego file below it, tests apart, and its data files.
// Names starting with a dot are skipped (.git, the ..data folders of a
// Kubernetes ConfigMap), except .manifest; symbolic links to files are
// followed. Returns EINVALID for a folder without policy modules or with a
// file that does not parse.
func ReadPolicyFS(fsys fs.FS) (PolicySet, error) {
	loader, err := bundle.NewFSLoader(fsys)
	if err != nil {
		return PolicySet{}, err
	}
	loader = loader.WithFollowSymlinks(true).WithSizeLimitBytes(MaxPolicyFileBytes).
		WithFilter(func(_ string, info fs.FileInfo, _ int) bool {
			name := info.Name()
			return strings.HasPrefix(name, ".") && name != "." && name != bundle.ManifestExt
		})
	b, err := bundle.NewCustomReader(loader).WithRegoVersion(ast.RegoV1).WithCapabilities(capabilities()).
		WithProcessAnnotations(true).WithSkipBundleVerification(true).WithSizeLimitBytes(MaxPolicyFileBytes).Read()
	if err != nil {
		return PolicySet{}, Errorf(EINVALID, "%s", err)
	}
	return PolicySetFromBundle(b)
}

// BundleOptions says how a bundle file is read.
type BundleOptions struct {
	// Verification checks the bundle's signature; nil reads it unsigned
	// (a signature it carries is then ignored).
	Verification *bundle.VerificationConfig
	// URL names the bundle in module locations; "" for a file.
	URL string
}

// ReadPolicyBundle reads an OPA bundle (the .tar.gz `opa build` writes).
// Returns EINVALID when it is not a bundle, does not verify, or holds a
// module that does not parse.
func ReadPolicyBundle(r io.Reader, opts BundleOptions) (PolicySet, error) {
	rd := bundle.NewCustomReader(bundle.NewTarballLoaderWithBaseURL(r, opts.URL)).WithRegoVersion(ast.RegoV1).
		WithCapabilities(capabilities()).WithProcessAnnotations(true).WithSizeLimitBytes(MaxPolicyFileBytes)
	if opts.Verification != nil {
		rd = rd.WithBundleVerificationConfig(opts.Verification)
	} else {
		rd = rd.WithSkipBundleVerification(true)
	}
	b, err := rd.Read()
	if err != nil {
		return PolicySet{}, Errorf(EINVALID, "%s", err)
	}
	return PolicySetFromBundle(b)
}

// PolicySetFromBundle takes the modules, tests and data of a bundle OPA
// has read. Only snapshot bundles hold a whole policy; a delta bundle is
// EINVALID. A set without modules is read, and refused when compiled.
func PolicySetFromBundle(b bundle.Bundle) (PolicySet, error) {
	if b.Type() != bundle.SnapshotBundleType {
		return PolicySet{}, Errorf(EINVALID, "a %s bundle holds changes, not a policy; serve a snapshot bundle", b.Type())
	}
	set := PolicySet{Modules: map[string]string{}, Tests: map[string]string{}, Data: b.Data,
		ManifestRevision: b.Manifest.Revision, versions: map[string]ast.RegoVersion{}}
	for _, m := range b.Modules {
		name := strings.TrimPrefix(m.Path, "/")
		if strings.HasSuffix(name, "_test.rego") {
			set.Tests[name] = string(m.Raw)
		} else {
			set.Modules[name] = string(m.Raw)
		}
		if v, err := b.RegoVersionForFile(m.Path, ast.RegoV1); err == nil && v != ast.RegoV1 {
			set.versions[name] = v
		}
	}
	return set, nil
}

// ReadPolicies returns the policy modules of fsys (ReadPolicyFS without
// tests and data), keyed by path, ready for NewEngine or Load.
func ReadPolicies(fsys fs.FS) (map[string]string, error) {
	set, err := ReadPolicyFS(fsys)
	if err != nil {
		return nil, err
	}
	if len(set.Modules) == 0 {
		return nil, Errorf(EINVALID, "no policy files (*.rego, not *_test.rego) found")
	}
	return set.Modules, nil
}

// Merge adds other's modules, tests and data to s, as `opa test a b`
// loads several folders: a module path in both, or data at the same path,
// is EINVALID.
func (s PolicySet) Merge(other PolicySet) (PolicySet, error) {
	out := PolicySet{Modules: maps.Clone(s.Modules), Tests: maps.Clone(s.Tests), Data: map[string]any{},
		ManifestRevision: s.ManifestRevision, versions: maps.Clone(s.versions)}
	if out.Modules == nil {
		out.Modules = map[string]string{}
	}
	if out.Tests == nil {
		out.Tests = map[string]string{}
	}
	if out.versions == nil {
		out.versions = map[string]ast.RegoVersion{}
	}
	for _, pair := range []struct{ dst, src map[string]string }{{out.Modules, other.Modules}, {out.Tests, other.Tests}} {
		for name, src := range pair.src {
			if _, dup := out.Modules[name]; dup {
				return PolicySet{}, Errorf(EINVALID, "two policy files are named %s", name)
			}
			if _, dup := out.Tests[name]; dup {
				return PolicySet{}, Errorf(EINVALID, "two policy files are named %s", name)
			}
			pair.dst[name] = src
		}
	}
	maps.Copy(out.versions, other.versions)
	for _, d := range []map[string]any{s.Data, other.Data} {
		if err := mergeData(out.Data, d, "data"); err != nil {
			return PolicySet{}, err
		}
	}
	return out, nil
}

// mergeData adds src into dst, objects merged member by member; any other
// value at the same path is a conflict.
func mergeData(dst, src map[string]any, at string) error {
	for k, v := range src {
		old, ok := dst[k]
		if !ok {
			dst[k] = v
			continue
		}
		om, ok1 := old.(map[string]any)
		nm, ok2 := v.(map[string]any)
		if !ok1 || !ok2 {
			return Errorf(EINVALID, "two data files set %s.%s", at, k)
		}
		merged := maps.Clone(om)
		if err := mergeData(merged, nm, at+"."+k); err != nil {
			return err
		}
		dst[k] = merged
	}
	return nil
}

// Revision is the set's content hash, "sha256:" and 64 hex digits, over
// its modules and data (not its tests, which decide nothing): the same
// policy has the same revision on every instance, wherever it came from.
func (s PolicySet) Revision() string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(s.Modules)) {
		fmt.Fprintf(h, "module %d %s\n%d\n", len(name), name, len(s.Modules[name]))
		h.Write([]byte(s.Modules[name]))
	}
	data, err := json.Marshal(s.Data) // map keys sorted: canonical
	if err != nil {
		data = []byte(fmt.Sprintf("%v", s.Data))
	}
	fmt.Fprintf(h, "data %d\n", len(data))
	h.Write(data)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// parse returns every module and test parsed, in the Rego version its
// bundle gives it (v1 by default). Returns EINVALID naming the file that
// does not parse.
func (s PolicySet) parse(withTests bool) (map[string]*ast.Module, error) {
	out := make(map[string]*ast.Module, len(s.Modules)+len(s.Tests))
	add := func(srcs map[string]string) error {
		for _, name := range slices.Sorted(maps.Keys(srcs)) {
			v, ok := s.versions[name]
			if !ok {
				v = ast.RegoV1
			}
			m, err := ast.ParseModuleWithOpts(name, srcs[name], ast.ParserOptions{RegoVersion: v, ProcessAnnotation: true})
			if err != nil {
				return Errorf(EINVALID, "policy does not compile: %s", err)
			}
			out[name] = m
		}
		return nil
	}
	if err := add(s.Modules); err != nil {
		return nil, err
	}
	if withTests {
		if err := add(s.Tests); err != nil {
			return nil, err
		}
	}
	return out, nil
}
