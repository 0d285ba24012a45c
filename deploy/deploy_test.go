// Package deploy_test checks the deployment files: the Kubernetes manifests
// in k8s/, docker-compose.yml with its configs in compose/, and the systemd
// unit. The hub and agent configs they carry are loaded with the real
// loaders (hub.LoadConfig, agent.LoadConfig), inside a temporary directory
// laid out like the container's filesystem: every mount of the container
// (bind mounts, ConfigMaps, Secrets, volumes) is materialised under it and
// the config's absolute paths are re-rooted there. So a config passes only
// if the files it names are really provided by the mounts beside it. What
// no mount provides in the repository (the TLS files the compose `certs`
// service or the operator generate) is generated with hub/pki.
package deploy_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bureauhub/bureauhub/agent"
	"github.com/bureauhub/bureauhub/hub"
	"github.com/bureauhub/bureauhub/hub/pki"
)

// repoRoot is the repository, seen from this package's directory.
const repoRoot = ".."

// imageFiles are paths the Dockerfile puts into the image, as repository
// paths: a mount may hide them.
var imageFiles = map[string]string{"/usr/share/bureauhub/rules": "rules"}

// --- Kubernetes ---

// object is one manifest document.
type object struct {
	file string
	doc  map[string]any
}

func (o object) kind() string      { return str(o.doc["kind"]) }
func (o object) name() string      { return str(get(o.doc, "metadata", "name")) }
func (o object) namespace() string { return str(get(o.doc, "metadata", "namespace")) }
func (o object) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", o.kind(), o.namespace(), o.name(), o.file)
}

// apiVersions are the API versions the manifests may use, by kind.
var apiVersions = map[string]string{
	"Namespace": "v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1", "ServiceAccount": "v1",
	"StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "Deployment": "apps/v1",
	"PodDisruptionBudget": "policy/v1",
	"ClusterRole":         "rbac.authorization.k8s.io/v1", "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
	"Role": "rbac.authorization.k8s.io/v1", "RoleBinding": "rbac.authorization.k8s.io/v1",
}

var clusterScoped = map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true}

// external are objects the manifests reference but do not carry, because
// the operator creates them from generated files (README "Deploy"), with
// the keys the pods expect.
var external = map[string][]string{
	"Secret/bureauhub/hub-tls":         {"tls.crt", "tls.key"},
	"ConfigMap/bureauhub/bureauhub-ca": {"ca.pem"},
}

// manifests decodes every document of k8s/*.yaml.
func manifests(t testing.TB) []object {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in k8s/: %v", err)
	}
	var objs []object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for i := 0; ; i++ {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if doc == nil {
				continue
			}
			objs = append(objs, object{file: f, doc: doc})
		}
	}
	return objs
}

func key(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

// index maps kind/namespace/name to the object.
func index(objs []object) map[string]object {
	m := map[string]object{}
	for _, o := range objs {
		m[key(o.kind(), o.namespace(), o.name())] = o
	}
	return m
}

// TestManifests checks each document's identity and the fields its kind
// needs, and that every reference between documents resolves.
func TestManifests(t *testing.T) {
	objs := manifests(t)
	idx := index(objs)
	seen := map[string]string{}
	for _, o := range objs {
		t.Run(o.kind()+"/"+o.name(), func(t *testing.T) {
			k := key(o.kind(), o.namespace(), o.name())
			if prev, dup := seen[k]; dup {
				t.Fatalf("%v: defined twice (also in %s)", o, prev)
			}
			seen[k] = o.file
			want, ok := apiVersions[o.kind()]
			if !ok {
				t.Fatalf("%v: kind not known to this test", o)
			}
			if got := str(o.doc["apiVersion"]); got != want {
				t.Errorf("%v: apiVersion %q, want %q", o, got, want)
			}
			if !regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`).MatchString(o.name()) {
				t.Errorf("%v: metadata.name %q is not a DNS-1123 name", o, o.name())
			}
			if clusterScoped[o.kind()] != (o.namespace() == "") {
				t.Errorf("%v: metadata.namespace %q is wrong for a %s", o, o.namespace(), o.kind())
			}
			if ns := o.namespace(); ns != "" {
				if _, ok := idx[key("Namespace", "", ns)]; !ok {
					t.Errorf("%v: namespace %q is not in the manifests", o, ns)
				}
			}
			switch o.kind() {
			case "StatefulSet", "DaemonSet", "Deployment":
				checkWorkload(t, o, idx)
			case "Service":
				checkService(t, o, objs)
			case "ClusterRoleBinding", "RoleBinding":
				checkBinding(t, o, idx)
			case "PodDisruptionBudget":
				sel := mapOf(get(o.doc, "spec", "selector", "matchLabels"))
				if len(sel) == 0 || len(workloadsMatching(objs, o.namespace(), sel)) == 0 {
					t.Errorf("%v: spec.selector.matchLabels %v selects no workload", o, sel)
				}
				if get(o.doc, "spec", "minAvailable") == nil && get(o.doc, "spec", "maxUnavailable") == nil {
					t.Errorf("%v: neither minAvailable nor maxUnavailable", o)
				}
			case "Secret":
				for k, v := range mapOf(o.doc["stringData"]) {
					if str(v) == "" {
						t.Errorf("%v: stringData.%s is empty", o, k)
					}
				}
			case "ConfigMap":
				if len(mapOf(o.doc["data"])) == 0 {
					t.Errorf("%v: no data", o)
				}
			}
		})
	}
	// The deployment as a whole: three hubs behind a headless Service, an
	// agent on every node, a budget for the hubs.
	sts, ok := idx[key("StatefulSet", "bureauhub", "hub")]
	if !ok {
		t.Fatal("no StatefulSet bureauhub/hub")
	}
	if n := get(sts.doc, "spec", "replicas"); n != 3 {
		t.Errorf("hub StatefulSet: replicas %v, want 3", n)
	}
	if _, ok := idx[key("DaemonSet", "bureauhub", "bureauhub-agent")]; !ok {
		t.Error("no DaemonSet bureauhub/bureauhub-agent")
	}
	if _, ok := idx[key("PodDisruptionBudget", "bureauhub", "hub")]; !ok {
		t.Error("no PodDisruptionBudget for the hubs")
	}
	if ch, ok := idx[key("Service", "bureauhub", "clickhouse")]; !ok || get(ch.doc, "spec", "type") != "ExternalName" {
		t.Error("no ExternalName Service bureauhub/clickhouse")
	}
}

func checkWorkload(t *testing.T, o object, idx map[string]object) {
	t.Helper()
	spec := mapOf(get(o.doc, "spec"))
	sel := mapOf(get(spec, "selector", "matchLabels"))
	labels := mapOf(get(spec, "template", "metadata", "labels"))
	if len(sel) == 0 {
		t.Errorf("%v: spec.selector.matchLabels is empty", o)
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("%v: selector %s=%v does not match template label %v", o, k, v, labels[k])
		}
	}
	pod := mapOf(get(spec, "template", "spec"))
	if sa := str(pod["serviceAccountName"]); sa != "" {
		if _, ok := idx[key("ServiceAccount", o.namespace(), sa)]; !ok {
			t.Errorf("%v: serviceAccountName %q is not in the manifests", o, sa)
		}
	}
	volumes := map[string]map[string]any{}
	for _, v := range listOf(pod["volumes"]) {
		volumes[str(get(v, "name"))] = mapOf(v)
	}
	for _, c := range listOf(get(spec, "volumeClaimTemplates")) {
		volumes[str(get(c, "metadata", "name"))] = map[string]any{"persistentVolumeClaim": true}
	}
	for name, v := range volumes {
		checkVolumeSource(t, o, name, v, idx)
	}
	if o.kind() == "StatefulSet" {
		svc, ok := idx[key("Service", o.namespace(), str(spec["serviceName"]))]
		if !ok {
			t.Errorf("%v: serviceName %q is not in the manifests", o, spec["serviceName"])
		} else if get(svc.doc, "spec", "clusterIP") != "None" {
			t.Errorf("%v: serviceName %q is not headless (clusterIP: None)", o, spec["serviceName"])
		}
	}
	containers := listOf(pod["containers"])
	if len(containers) == 0 {
		t.Fatalf("%v: no containers", o)
	}
	all := append(slices.Clone(containers), listOf(pod["initContainers"])...)
	for i, c := range all {
		init := i >= len(containers)
		name := str(get(c, "name"))
		if name == "" || str(get(c, "image")) == "" {
			t.Errorf("%v: container %d lacks name or image", o, i)
		}
		res := mapOf(get(c, "resources"))
		if len(mapOf(res["requests"])) == 0 || len(mapOf(res["limits"])) == 0 {
			t.Errorf("%v: container %s lacks resource requests or limits", o, name)
		}
		for _, m := range listOf(get(c, "volumeMounts")) {
			if _, ok := volumes[str(get(m, "name"))]; !ok {
				t.Errorf("%v: container %s mounts undeclared volume %q", o, name, get(m, "name"))
			}
		}
		if init {
			continue
		}
		ports := map[string]bool{}
		for _, p := range listOf(get(c, "ports")) {
			ports[str(get(p, "name"))] = true
			if get(p, "containerPort") == nil {
				t.Errorf("%v: container %s has a port without containerPort", o, name)
			}
		}
		if len(ports) == 0 {
			t.Errorf("%v: container %s has no ports", o, name)
		}
		for _, probe := range []string{"readinessProbe", "livenessProbe"} {
			h := mapOf(get(c, probe, "httpGet"))
			if str(h["path"]) != "/-/healthy" {
				t.Errorf("%v: container %s: %s.httpGet.path %q, want /-/healthy", o, name, probe, h["path"])
			}
			if !ports[str(h["port"])] {
				t.Errorf("%v: container %s: %s port %v is not a named container port", o, name, probe, h["port"])
			}
		}
	}
}

// checkVolumeSource checks that a ConfigMap or Secret volume's object
// exists and has the keys its items name.
func checkVolumeSource(t *testing.T, o object, name string, v map[string]any, idx map[string]object) {
	t.Helper()
	kind, ref, items := "", "", []any(nil)
	switch {
	case v["configMap"] != nil:
		kind, ref, items = "ConfigMap", str(get(v, "configMap", "name")), listOf(get(v, "configMap", "items"))
	case v["secret"] != nil:
		kind, ref, items = "Secret", str(get(v, "secret", "secretName")), listOf(get(v, "secret", "items"))
	default:
		return
	}
	keys, err := objectKeys(kind, o.namespace(), ref, idx)
	if err != nil {
		t.Errorf("%v: volume %s: %v", o, name, err)
		return
	}
	for _, it := range items {
		if k := str(get(it, "key")); !slices.Contains(keys, k) {
			t.Errorf("%v: volume %s: %s %s has no key %q (has %v)", o, name, kind, ref, k, keys)
		}
	}
}

// objectKeys lists a ConfigMap's or Secret's keys, from the manifests or
// the list of externally created objects.
func objectKeys(kind, ns, name string, idx map[string]object) ([]string, error) {
	if keys, ok := external[key(kind, ns, name)]; ok {
		return keys, nil
	}
	obj, ok := idx[key(kind, ns, name)]
	if !ok {
		return nil, fmt.Errorf("%s %s/%s is neither in the manifests nor a documented external object", kind, ns, name)
	}
	var keys []string
	for _, field := range []string{"data", "stringData"} {
		for k := range mapOf(obj.doc[field]) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

func checkService(t *testing.T, o object, objs []object) {
	t.Helper()
	spec := mapOf(o.doc["spec"])
	if spec["type"] == "ExternalName" {
		if str(spec["externalName"]) == "" {
			t.Errorf("%v: ExternalName without externalName", o)
		}
		return
	}
	sel := mapOf(spec["selector"])
	ws := workloadsMatching(objs, o.namespace(), sel)
	if len(sel) == 0 || len(ws) == 0 {
		t.Fatalf("%v: selector %v selects no workload", o, sel)
	}
	ports := map[string]bool{}
	for _, w := range ws {
		for _, c := range listOf(get(w.doc, "spec", "template", "spec", "containers")) {
			for _, p := range listOf(get(c, "ports")) {
				ports[str(get(p, "name"))] = true
			}
		}
	}
	for _, p := range listOf(spec["ports"]) {
		if tp, ok := get(p, "targetPort").(string); ok && !ports[tp] {
			t.Errorf("%v: targetPort %q is not a container port of %v", o, tp, ws)
		}
	}
}

func checkBinding(t *testing.T, o object, idx map[string]object) {
	t.Helper()
	rk, rn := str(get(o.doc, "roleRef", "kind")), str(get(o.doc, "roleRef", "name"))
	ns := ""
	if rk == "Role" {
		ns = o.namespace()
	}
	if _, ok := idx[key(rk, ns, rn)]; !ok {
		t.Errorf("%v: roleRef %s %s is not in the manifests", o, rk, rn)
	}
	subjects := listOf(o.doc["subjects"])
	if len(subjects) == 0 {
		t.Errorf("%v: no subjects", o)
	}
	for _, s := range subjects {
		if str(get(s, "kind")) != "ServiceAccount" {
			continue
		}
		if _, ok := idx[key("ServiceAccount", str(get(s, "namespace")), str(get(s, "name")))]; !ok {
			t.Errorf("%v: subject ServiceAccount %v/%v is not in the manifests", o, get(s, "namespace"), get(s, "name"))
		}
	}
}

func workloadsMatching(objs []object, ns string, sel map[string]any) []object {
	var out []object
	for _, o := range objs {
		switch o.kind() {
		case "StatefulSet", "DaemonSet", "Deployment":
		default:
			continue
		}
		if o.namespace() != ns {
			continue
		}
		labels := mapOf(get(o.doc, "spec", "template", "metadata", "labels"))
		match := len(sel) > 0
		for k, v := range sel {
			match = match && labels[k] == v
		}
		if match {
			out = append(out, o)
		}
	}
	return out
}

// TestKubernetesConfigsLoad loads the hub configs of the hub-config
// ConfigMap and the agent config the render-config init container makes
// from its template, each in a filesystem laid out like its pod's.
func TestKubernetesConfigsLoad(t *testing.T) {
	objs := manifests(t)
	idx := index(objs)
	certs := demoCerts(t)
	externalFiles := map[string]map[string]string{
		"Secret/bureauhub/hub-tls":         {"tls.crt": certs.CertFile, "tls.key": certs.KeyFile},
		"ConfigMap/bureauhub/bureauhub-ca": {"ca.pem": certs.CAFile},
	}

	t.Run("hub", func(t *testing.T) {
		// What the StatefulSet's downward API gives the cluster section.
		t.Setenv("POD_NAME", "hub-0")
		t.Setenv("POD_IP", "10.0.0.10")
		sts := idx[key("StatefulSet", "bureauhub", "hub")]
		root, mounts := podFS(t, sts, "hub", idx, externalFiles)
		c := container(t, sts, "hub")
		args := strings.Join(append(strSlice(get(c, "command")), strSlice(get(c, "args"))...), " ")
		for _, role := range []string{"primary", "secondary"} {
			t.Run(role, func(t *testing.T) {
				path := "/etc/bureauhub/config/hub-" + role + ".yml"
				if !strings.Contains(args, "/etc/bureauhub/config/hub-$role.yml") {
					t.Fatalf("the hub container's command %q does not choose /etc/bureauhub/config/hub-$role.yml", args)
				}
				cfg := loadHub(t, root, mounts, path)
				if cfg.Cluster == nil || cfg.Cluster.BindAddress != "10.0.0.10:7946" || cfg.Cluster.Name != "hub-0" {
					t.Fatalf("%s: cluster section %+v, want the pod's name and IP from the environment", path, cfg.Cluster)
				}
			})
		}
	})
	t.Run("agent", func(t *testing.T) {
		ds := idx[key("DaemonSet", "bureauhub", "bureauhub-agent")]
		root, mounts := podFS(t, ds, "agent", idx, externalFiles)
		// What render-config does: replace the placeholders its sed names.
		render := strings.Join(strSlice(get(initContainer(t, ds, "render-config"), "command")), " ")
		for _, ph := range []string{"NODE_NAME", "HOST_IP"} {
			if !strings.Contains(render, `s/\${`+ph+`}/$`+ph+`/g`) {
				t.Fatalf("render-config does not substitute ${%s}: %s", ph, render)
			}
		}
		cm := idx[key("ConfigMap", "bureauhub", "bureauhub-agent-config")]
		text := str(get(cm.doc, "data", "agent.yml"))
		text = strings.NewReplacer("${NODE_NAME}", "node-a", "${HOST_IP}", "10.0.0.7").Replace(text)
		if strings.Contains(text, "${") {
			t.Fatalf("agent.yml has a placeholder render-config leaves: %s", text)
		}
		writeFile(t, filepath.Join(root, "etc/bureauhub/config/agent.yml"), text)
		cfg := loadAgent(t, root, mounts, "/etc/bureauhub/config/agent.yml")
		if cfg.Identity.Instance != "node-a" {
			t.Errorf("identity.instance = %q after rendering, want the node name", cfg.Identity.Instance)
		}
		cmd := strSlice(get(container(t, ds, "agent"), "command"))
		if !slices.Contains(cmd, "/etc/bureauhub/config/agent.yml") {
			t.Errorf("the agent does not run with the rendered config: %v", cmd)
		}
	})
}

// podFS materialises the volume mounts of a workload's container under a
// temporary root: ConfigMaps and Secrets as files (their items, or every
// key), the external objects from files, other volumes as empty
// directories. It returns the root and the mount points.
func podFS(t *testing.T, o object, containerName string, idx map[string]object, externalFiles map[string]map[string]string) (string, []string) {
	t.Helper()
	root := t.TempDir()
	pod := mapOf(get(o.doc, "spec", "template", "spec"))
	volumes := map[string]map[string]any{}
	for _, v := range listOf(pod["volumes"]) {
		volumes[str(get(v, "name"))] = mapOf(v)
	}
	var mounts []string
	for _, m := range listOf(get(container(t, o, containerName), "volumeMounts")) {
		mp := str(get(m, "mountPath"))
		mounts = append(mounts, mp)
		dir := filepath.Join(root, mp)
		mkdir(t, dir)
		v := volumes[str(get(m, "name"))]
		kind, ref, items := "", "", []any(nil)
		switch {
		case v["configMap"] != nil:
			kind, ref, items = "ConfigMap", str(get(v, "configMap", "name")), listOf(get(v, "configMap", "items"))
		case v["secret"] != nil:
			kind, ref, items = "Secret", str(get(v, "secret", "secretName")), listOf(get(v, "secret", "items"))
		default:
			continue
		}
		files := map[string]string{} // key → content
		if ext, ok := externalFiles[key(kind, o.namespace(), ref)]; ok {
			for k, src := range ext {
				b, err := os.ReadFile(src)
				if err != nil {
					t.Fatal(err)
				}
				files[k] = string(b)
			}
		} else {
			obj := idx[key(kind, o.namespace(), ref)]
			for _, field := range []string{"data", "stringData"} {
				for k, val := range mapOf(obj.doc[field]) {
					files[k] = str(val)
				}
			}
		}
		if len(items) == 0 {
			for k, content := range files {
				writeFile(t, filepath.Join(dir, k), content)
			}
		}
		for _, it := range items {
			writeFile(t, filepath.Join(dir, str(get(it, "path"))), files[str(get(it, "key"))])
		}
	}
	mounts = append(mounts, imageMounts(t, root, mounts)...)
	return root, mounts
}

// imageMounts links the image's own files (the shipped rules) into root
// unless a mount hides them, and returns their paths.
func imageMounts(t *testing.T, root string, mounts []string) []string {
	t.Helper()
	var out []string
	for p, src := range imageFiles {
		if slices.Contains(mounts, p) {
			continue
		}
		link(t, filepath.Join(repoRoot, src), filepath.Join(root, p))
		out = append(out, p)
	}
	return out
}

// --- compose ---

// composeFile is what the tests read of docker-compose.yml.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
}

type composeService struct {
	Image      string    `yaml:"image"`
	Build      yaml.Node `yaml:"build"`
	Entrypoint []string  `yaml:"entrypoint"`
	Command    []string  `yaml:"command"`
	Volumes    []string  `yaml:"volumes"`
	DependsOn  yaml.Node `yaml:"depends_on"`
	Networks   yaml.Node `yaml:"networks"`
}

func readCompose(t testing.TB) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return cf
}

// mount is one entry of a compose service's volumes.
type mount struct {
	source, target string
	bind           bool
}

func parseMount(s string) mount {
	parts := strings.Split(s, ":")
	m := mount{source: parts[0], target: parts[0]}
	if len(parts) > 1 {
		m.target = parts[1]
	}
	m.bind = strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/")
	return m
}

// notInRepo are bind-mounted host paths a fresh checkout lacks, and why.
// generated: built before `docker compose up`. pending: being written
// (remove the entry when it lands, so that its absence fails again).
var notInRepo = map[string]string{
	"plugin/dist":                 "generated: cd plugin && npm ci && npm run build",
	"deploy/grafana/provisioning": "pending: Grafana provisioning, written by another change",
}

// TestComposeMounts checks that every bind-mounted host path exists in the
// repository, that named volumes are declared and dependencies name
// services, and that each build target is a Dockerfile stage.
func TestComposeMounts(t *testing.T) {
	cf := readCompose(t)
	dockerfile, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for name, svc := range cf.Services {
		for _, v := range svc.Volumes {
			m := parseMount(v)
			if !m.bind {
				if _, ok := cf.Volumes[m.source]; !ok {
					t.Errorf("%s: volume %q is not declared under volumes:", name, m.source)
				}
				continue
			}
			rel := filepath.Clean(m.source)
			if why, ok := notInRepo[filepath.ToSlash(rel)]; ok {
				if _, err := os.Stat(filepath.Join(repoRoot, rel)); err != nil {
					t.Logf("%s: %s is not in the checkout (%s)", name, rel, why)
				}
				continue
			}
			if _, err := os.Stat(filepath.Join(repoRoot, rel)); err != nil {
				t.Errorf("%s: bind mount %s: %v", name, m.source, err)
			}
		}
		var deps []string
		switch svc.DependsOn.Kind {
		case yaml.SequenceNode:
			_ = svc.DependsOn.Decode(&deps)
		case yaml.MappingNode, yaml.AliasNode:
			var m map[string]any
			if err := svc.DependsOn.Decode(&m); err != nil {
				t.Fatalf("%s: depends_on: %v", name, err)
			}
			for d := range m {
				deps = append(deps, d)
			}
		}
		for _, d := range deps {
			if _, ok := cf.Services[d]; !ok {
				t.Errorf("%s: depends_on %q, which is not a service", name, d)
			}
		}
		var build struct {
			Target string            `yaml:"target"`
			Args   map[string]string `yaml:"args"`
		}
		if err := svc.Build.Decode(&build); err == nil && build.Target != "" {
			if !regexp.MustCompile(`(?mi)^FROM .* AS ` + regexp.QuoteMeta(build.Target) + `$`).Match(dockerfile) {
				t.Errorf("%s: build target %q is not a Dockerfile stage", name, build.Target)
			}
		}
		if len(svc.Entrypoint) > 0 && strings.HasPrefix(svc.Entrypoint[0], "/usr/local/bin/") {
			bin := strings.TrimPrefix(svc.Entrypoint[0], "/usr/local/bin/")
			if !strings.Contains(string(dockerfile), "./cmd/"+bin) {
				t.Errorf("%s: entrypoint %s is not built by the Dockerfile", name, svc.Entrypoint[0])
			}
		}
	}
	for _, want := range []string{"clickhouse", "hub-1", "hub-2", "hub-3", "agent-consular", "agent-health", "agent-transport", "loadgen", "grafana"} {
		if _, ok := cf.Services[want]; !ok {
			t.Errorf("no service %q", want)
		}
	}
}

// TestComposeConfigsLoad loads every hub and agent config compose starts,
// in a filesystem laid out like the service's container.
func TestComposeConfigsLoad(t *testing.T) {
	cf := readCompose(t)
	certs := demoCerts(t)
	// What the certs service leaves in the named volumes.
	volumeFiles := map[string]map[string]string{
		"hub-tls":  {"ca.pem": certs.CAFile, "server.pem": certs.CertFile, "server-key.pem": certs.KeyFile},
		"agent-ca": {"ca.pem": certs.CAFile},
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range cf.Services {
			if !yield(n) {
				return
			}
		}
	})
	loaded := 0
	for _, name := range names {
		svc := cf.Services[name]
		if len(svc.Entrypoint) == 0 {
			continue
		}
		bin := filepath.Base(svc.Entrypoint[0])
		if bin != "hub" && bin != "agent" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			var mounts []string
			for _, v := range svc.Volumes {
				m := parseMount(v)
				mounts = append(mounts, m.target)
				if m.bind {
					link(t, filepath.Join(repoRoot, m.source), filepath.Join(root, m.target))
					continue
				}
				dir := filepath.Join(root, m.target)
				mkdir(t, dir)
				for k, src := range volumeFiles[m.source] {
					b, err := os.ReadFile(src)
					if err != nil {
						t.Fatal(err)
					}
					writeFile(t, filepath.Join(dir, k), string(b))
				}
			}
			mounts = append(mounts, imageMounts(t, root, mounts)...)
			i := slices.Index(svc.Command, "-config.file")
			if i < 0 || i+1 >= len(svc.Command) {
				t.Fatalf("command %v has no -config.file", svc.Command)
			}
			path := svc.Command[i+1]
			if bin == "hub" {
				loadHub(t, root, mounts, path)
			} else {
				loadAgent(t, root, mounts, path)
			}
		})
		loaded++
	}
	if loaded != 6 {
		t.Errorf("loaded %d hub and agent configs, want 6 (three hubs, three agents)", loaded)
	}
}

// TestComposeReplicaAddress checks that hub-1's hosted services' replicas
// listen on hub-1's fixed compose address, inside the compose subnet: HTTP
// SD hands that address to the agents in the other containers.
func TestComposeReplicaAddress(t *testing.T) {
	cf := readCompose(t)
	var nets map[string]struct {
		IPv4 string `yaml:"ipv4_address"`
	}
	hub1 := cf.Services["hub-1"]
	if err := hub1.Networks.Decode(&nets); err != nil {
		t.Fatalf("hub-1 networks: %v", err)
	}
	addr := nets["bureauhub"].IPv4
	_, subnet, err := net.ParseCIDR(cf.Networks["bureauhub"].IPAM.Config[0].Subnet)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(addr); ip == nil || !subnet.Contains(ip) {
		t.Fatalf("hub-1's ipv4_address %q is not in the subnet %v", addr, subnet)
	}
	b, err := os.ReadFile("compose/hub-1.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg hub.Config
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Services.Booking == nil || cfg.Services.HealthCode == nil {
		t.Fatal("hub-1 hosts no booking or healthcode service")
	}
	for svc, got := range map[string]string{"booking": cfg.Services.Booking.Hosting.ReplicaHost, "healthcode": cfg.Services.HealthCode.Hosting.ReplicaHost} {
		if got != addr {
			t.Errorf("services.%s.hosting.replica_host = %q, want hub-1's compose address %q", svc, got, addr)
		}
	}
}

// --- loading configs ---

// rebase rewrites every absolute path in a YAML document that lies under
// one of mounts to the same path under root.
func rebase(t *testing.T, text []byte, root string, mounts []string) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && strings.HasPrefix(n.Value, "/") {
			for _, m := range mounts {
				if n.Value == m || strings.HasPrefix(n.Value, strings.TrimSuffix(m, "/")+"/") {
					n.Value = filepath.Join(root, n.Value)
					break
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// configIn reads a config at its in-container path and writes the rebased
// copy beside the root.
func configIn(t *testing.T, root string, mounts []string, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatalf("config %s is not provided by the mounts: %v", path, err)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	writeFile(t, out, string(rebase(t, b, root, mounts)))
	return out
}

func loadHub(t *testing.T, root string, mounts []string, path string) *hub.Config {
	t.Helper()
	cfg, err := hub.LoadConfig(configIn(t, root, mounts, path))
	if err != nil {
		t.Fatalf("hub.LoadConfig(%s): %v", path, err)
	}
	return cfg
}

func loadAgent(t *testing.T, root string, mounts []string, path string) *agent.Config {
	t.Helper()
	cfg, err := agent.LoadConfig(configIn(t, root, mounts, path))
	if err != nil {
		t.Fatalf("agent.LoadConfig(%s): %v", path, err)
	}
	return cfg
}

// demoCerts are TLS files for the names the deployments use.
func demoCerts(t *testing.T) pki.Files {
	t.Helper()
	f, err := pki.WriteDemoCerts(t.TempDir(), []string{"hub-1", "hub-2", "hub-3", "localhost"},
		[]net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestGenCerts runs compose/gen-certs.sh and checks that the server
// certificate it writes is valid for each hub name under its CA and pairs
// with its key.
func TestGenCerts(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := filepath.Join(t.TempDir(), "certs")
	out, err := exec.Command("sh", "compose/gen-certs.sh", dir, "hub-1", "hub-2", "hub-3", "localhost", "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("gen-certs.sh: %v\n%s", err, out)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	for _, name := range []string{"hub-1", "hub-2", "hub-3", "localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server.pem for %s: %v", name, err)
		}
	}
	if blk, _ := pem.Decode(caPEM); blk == nil || blk.Type != "CERTIFICATE" {
		t.Error("ca.pem is not a PEM certificate")
	}
	// A second run keeps the files.
	before, _ := os.ReadFile(filepath.Join(dir, "server.pem"))
	if out, err := exec.Command("sh", "compose/gen-certs.sh", dir, "other").CombinedOutput(); err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "server.pem")); !bytes.Equal(before, after) {
		t.Error("a second run replaced server.pem")
	}
}

// --- systemd ---

// TestSystemdUnit checks the agent unit's hardening and lifecycle settings.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("systemd/bureauhub-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{} // "Section.Key" → values
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("line %d: %q is not Key=Value in a section", i+1, line)
			}
			settings[section+"."+k] = append(settings[section+"."+k], v)
		}
	}
	for k, want := range map[string]string{
		"Service.DynamicUser":     "yes",
		"Service.ProtectSystem":   "strict",
		"Service.StateDirectory":  "bureauhub-agent",
		"Service.Restart":         "on-failure",
		"Service.KillSignal":      "SIGTERM",
		"Service.NoNewPrivileges": "yes",
		"Install.WantedBy":        "multi-user.target",
	} {
		if got := settings[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %v, want %s", k, got, want)
		}
	}
	if v := settings["Service.TimeoutStopSec"]; len(v) != 1 {
		t.Errorf("TimeoutStopSec = %v, want one value", v)
	}
	exec := strings.Join(settings["Service.ExecStart"], " ")
	if !strings.Contains(exec, "-config.file /etc/bureauhub/agent.yml") {
		t.Errorf("ExecStart %q does not read /etc/bureauhub/agent.yml", exec)
	}
}

// --- helpers ---

func get(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func listOf(v any) []any {
	l, _ := v.([]any)
	return l
}

func strSlice(v any) []string {
	var out []string
	for _, e := range listOf(v) {
		out = append(out, str(e))
	}
	return out
}

func container(t *testing.T, o object, name string) map[string]any {
	t.Helper()
	for _, c := range listOf(get(o.doc, "spec", "template", "spec", "containers")) {
		if str(get(c, "name")) == name {
			return mapOf(c)
		}
	}
	t.Fatalf("%v: no container %q", o, name)
	return nil
}

func initContainer(t *testing.T, o object, name string) map[string]any {
	t.Helper()
	for _, c := range listOf(get(o.doc, "spec", "template", "spec", "initContainers")) {
		if str(get(c, "name")) == name {
			return mapOf(c)
		}
	}
	t.Fatalf("%v: no init container %q", o, name)
	return nil
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	mkdir(t, filepath.Dir(path))
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// link makes dst a symlink to the repository path src.
func link(t *testing.T, src, dst string) {
	t.Helper()
	abs, err := filepath.Abs(src)
	if err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Dir(dst))
	if err := os.Symlink(abs, dst); err != nil {
		t.Fatal(err)
	}
}
