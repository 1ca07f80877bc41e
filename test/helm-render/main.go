// helm-render: renders a Helm chart the way `helm template` does, with the same engine Helm uses —
// Go text/template plus the sprig function library plus Helm's own functions (include, tpl,
// required, toYaml, fromYaml, toJson, fromJson, lookup) — so the charts in charts/ can be checked on
// a machine without helm or network access. It is a test tool, not shipped.
//
// Faithful to Helm 3 (pkg/engine, pkg/chartutil) in what the charts use:
//   - values: chart values.yaml coalesced with -f files (later wins; null deletes a key), parsed
//     through YAML → JSON like sigs.k8s.io/yaml, so numbers are float64 as in Helm;
//   - .Values .Release{Name,Namespace,Service,IsInstall,IsUpgrade,Revision} .Chart{Name,Version,
//     AppVersion,Description} .Capabilities{KubeVersion{Version,Major,Minor},APIVersions.Has}
//     .Template{Name,BasePath};
//   - every file in templates/ is parsed into one set named "<chart>/templates/<file>"; files starting
//     with "_" are only definitions; NOTES.txt is rendered apart; missingkey=zero and the
//     "<no value>" → "" replacement, as Helm's engine does;
//   - `lookup` returns an empty map (what `helm template` and --dry-run return);
//   - `required` fails with its message; `fail` fails.
//
// Output (stdout): JSON {"manifests":[{"template":..., "content":...}], "notes": "..."}.
// Build (no network): GO111MODULE=off GOPATH=/usr/share/gocode go build (see test/k8s-charts.test.ts).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v3"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

type manifest struct {
	Template string `json:"template"`
	Content  string `json:"content"`
}

type output struct {
	Manifests []manifest `json:"manifests"`
	Notes     string     `json:"notes"`
}

// yamlToJSONValue parses YAML and converts it to the types encoding/json produces, like sigs.k8s.io/yaml.
func yamlToJSONValue(data []byte) (map[string]interface{}, error) {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	j, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if err := json.Unmarshal(j, &out); err != nil {
		return nil, fmt.Errorf("values must be a mapping: %v", err)
	}
	return out, nil
}

// coalesce merges src into dst (src wins); a null in src deletes the key (Helm chartutil.CoalesceTables).
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, sv := range src {
		if sv == nil {
			delete(dst, k)
			continue
		}
		dv, ok := dst[k]
		sm, sIsMap := sv.(map[string]interface{})
		dm, dIsMap := dv.(map[string]interface{})
		if ok && sIsMap && dIsMap {
			dst[k] = coalesce(dm, sm)
		} else {
			dst[k] = sv
		}
	}
	return dst
}

// toYAML is Helm's toYaml: JSON round trip then YAML (sigs.k8s.io/yaml.Marshal), trailing newline trimmed.
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var generic interface{}
	if err := json.Unmarshal(j, &generic); err != nil {
		return ""
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(generic); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m, err := yamlToJSONValue([]byte(s))
	if err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	return m
}

func toJSON(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

type capabilities struct {
	KubeVersion map[string]string
	APIVersions apiVersions
}

type apiVersions []string

// Has is .Capabilities.APIVersions.Has.
func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

func main() {
	var files valueFiles
	name := flag.String("name", "ambit", "release name")
	namespace := flag.String("namespace", "istio-system", "release namespace")
	flag.Var(&files, "f", "values file (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: helm-render [-f values.yaml]... [--name n] [--namespace ns] <chart-dir>")
		os.Exit(2)
	}
	out, err := render(flag.Arg(0), *name, *namespace, files)
	if err != nil {
		fmt.Fprintf(os.Stderr, "helm-render: %v\n", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

func render(chartDir, releaseName, namespace string, valueFiles []string) (*output, error) {
	chartYaml, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	chartMeta, err := yamlToJSONValue(chartYaml)
	if err != nil {
		return nil, fmt.Errorf("Chart.yaml: %v", err)
	}
	chartName, _ := chartMeta["name"].(string)
	if chartName == "" {
		return nil, errors.New("Chart.yaml: name is required")
	}
	values := map[string]interface{}{}
	if data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml")); err == nil {
		if values, err = yamlToJSONValue(data); err != nil {
			return nil, fmt.Errorf("values.yaml: %v", err)
		}
	}
	for _, f := range valueFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		v, err := yamlToJSONValue(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f, err)
		}
		values = coalesce(values, v)
	}
	str := func(k string) string { s, _ := chartMeta[k].(string); return s }
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": releaseName, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": map[string]interface{}{
			"Name": chartName, "Version": str("version"), "AppVersion": str("appVersion"),
			"Description": str("description"),
		},
		"Capabilities": capabilities{
			KubeVersion: map[string]string{"Version": "v1.31.0", "Major": "1", "Minor": "31", "GitVersion": "v1.31.0"},
			APIVersions: apiVersions{"v1", "apps/v1", "rbac.authorization.k8s.io/v1", "apiextensions.k8s.io/v1", "policy/v1"},
		},
	}

	tpl := template.New("gotpl")
	// Helm's engine: missing keys render as zero values, and "<no value>" is replaced with "".
	tpl.Option("missingkey=zero")
	includedNames := map[string]int{}
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	funcs["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	funcs["lookup"] = func(apiVersion, kind, ns, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if includedNames[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includedNames[name]++
		defer func() { includedNames[name]-- }()
		var buf bytes.Buffer
		if err := tpl.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := tpl.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	tpl.Funcs(funcs)

	tdir := filepath.Join(chartDir, "templates")
	var names []string
	err = filepath.Walk(tdir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		name := path.Join(chartName, filepath.ToSlash(rel))
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if _, err := tpl.New(name).Parse(string(data)); err != nil {
			return fmt.Errorf("parse %s: %v", name, err)
		}
		names = append(names, name)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := &output{Manifests: []manifest{}}
	for _, name := range names {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": name, "BasePath": path.Join(chartName, "templates")}
		var buf bytes.Buffer
		if err := tpl.ExecuteTemplate(&buf, name, data); err != nil {
			return nil, fmt.Errorf("render %s: %v", name, err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if base == "NOTES.txt" {
			out.Notes = text
			continue
		}
		out.Manifests = append(out.Manifests, manifest{Template: name, Content: text})
	}
	// crds/ files are installed as they are, never templated (Helm 3).
	if entries, err := os.ReadDir(filepath.Join(chartDir, "crds")); err == nil {
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(chartDir, "crds", e.Name()))
			if err != nil {
				return nil, err
			}
			out.Manifests = append(out.Manifests, manifest{Template: path.Join(chartName, "crds", e.Name()), Content: string(data)})
		}
	}
	return out, nil
}
