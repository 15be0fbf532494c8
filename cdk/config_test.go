package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/surgeml/surge/internal/testenv"
)

// docsOption is a row's key in docs/aws.md's table of context options,
// with the row's default column.
type docsOption struct {
	key, def string
}

// documentedOptions are the keys of docs/aws.md's "Context options"
// table, in its order (a row may name several), with their row's default
// column.
func documentedOptions(t *testing.T) []docsOption {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.Root(t), "docs", "aws.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n### Context options\n")
	if !ok {
		t.Fatal(`docs/aws.md has no "### Context options" section`)
	}
	section, _, _ = strings.Cut(section, "\n#")
	key := regexp.MustCompile("`([^`]+)`")
	var out []docsOption
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		for _, m := range key.FindAllStringSubmatch(cells[1], -1) {
			out = append(out, docsOption{key: m[1], def: strings.TrimSpace(cells[2])})
		}
	}
	return out
}

// The docs' table lists exactly options' keys, in options' order, and
// states each default that does not depend on the machine.
func TestContextOptionsDocumented(t *testing.T) {
	repo := testenv.Root(t)
	documented := documentedOptions(t)
	var docKeys, keys []string
	for _, d := range documented {
		docKeys = append(docKeys, d.key)
	}
	for _, o := range options(repo, course{}) {
		keys = append(keys, o.key)
	}
	if !slices.Equal(docKeys, keys) {
		t.Fatalf("docs/aws.md's context options %v\n  differ from options' %v", docKeys, keys)
	}
	for i, o := range options(repo, course{}) {
		// modelDir and ortLib default to paths found on this machine,
		// which the docs describe rather than state.
		if o.def == "" || filepath.IsAbs(o.def) {
			continue
		}
		if !strings.Contains(documented[i].def, o.def) {
			t.Errorf("docs/aws.md: %s defaults to %q, not %q", o.key, documented[i].def, o.def)
		}
	}
}

// cdkJSON is the repository's cdk.json, which the CDK CLI reads.
func cdkJSON(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.Root(t), "cdk.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("cdk.json: %v", err)
	}
	return doc
}

// cliContext is the context the CDK CLI hands the app (in
// CDK_CONTEXT_JSON) for `cdk synth -c key=value...`: cdk.json's context,
// the -c flags over it (as strings), and what the CLI adds itself, as CLI
// 2.1149.0 passed it to an app that printed CDK_CONTEXT_JSON. (A
// cdk.context.json or ~/.cdk.json would add theirs; this repository has
// neither.)
func cliContext(t *testing.T, flags map[string]string) map[string]any {
	t.Helper()
	ctx := map[string]any{}
	if c, ok := cdkJSON(t)["context"].(map[string]any); ok {
		maps.Copy(ctx, c)
	}
	for k, v := range flags {
		ctx[k] = v
	}
	maps.Copy(ctx, map[string]any{
		"aws:cdk:enable-path-metadata":              true,
		"aws:cdk:enable-asset-metadata":             true,
		"aws:cdk:version-reporting":                 true,
		"aws:cdk:bundling-stacks":                   []any{"**"},
		"@aws-cdk/core:failSynthOnValidationErrors": false,
	})
	return ctx
}

// cdk.json is the CLI's: every default of Surge's is options', so that a
// context means the same through `cdk deploy`, `make synth` and the
// emulator.
func TestCdkJSONSetsNoSurgeKey(t *testing.T) {
	surge := map[string]bool{}
	for _, o := range options(testenv.Root(t), course{}) {
		surge[o.key] = true
	}
	doc := cdkJSON(t)
	context, _ := doc["context"].(map[string]any)
	for _, k := range slices.Sorted(maps.Keys(context)) {
		if surge[k] {
			t.Errorf("cdk.json sets %s=%v: the CDK CLI passes it to every deploy, over options' default", k, context[k])
		}
	}
	if doc["app"] != "go run ./cdk" || doc["output"] != "cdk.out" {
		t.Errorf("cdk.json runs %v into %v, want go run ./cdk into cdk.out", doc["app"], doc["output"])
	}
}

// `npx aws-cdk@2 deploy -c course=2026` deploys what `make synth
// COURSE=2026` synthesizes: the 2026 grader's cap of 15 and its bucket
// names.
func TestCLIContextCourse2026(t *testing.T) {
	modelDir, ortLib, _ := runtimeFiles(t)
	ctx := cliContext(t, map[string]string{"course": "2026", "modelDir": modelDir, "ortLib": ortLib})
	cfg, err := configFromContext(contextNode(ctx), testenv.Root(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxWorkers != 15 || !cfg.CourseNames {
		t.Errorf("cdk deploy -c course=2026: maxWorkers %d, courseNames %v; want 15, true", cfg.MaxWorkers, cfg.CourseNames)
	}
}

// A misspelt key is refused, naming Surge's keys and the one likeliest
// meant; the keys the CDK CLI and library use, and users set for the CDK,
// pass.
func TestUnknownContextKeys(t *testing.T) {
	repo := testenv.Root(t)
	modelDir, ortLib, _ := runtimeFiles(t)
	for key, meant := range map[string]string{
		"maxWorker": "maxWorkers", "MaxWorkers": "maxWorkers", "prefx": "prefix", "subnets": "subnetIds", "colour": "",
	} {
		ctx := map[string]any{"modelDir": modelDir, "ortLib": ortLib, key: "5"}
		_, err := configFromContext(contextNode(ctx), repo)
		if err == nil {
			t.Errorf("-c %s=5: accepted", key)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, fmt.Sprintf("%q", key)) || !strings.Contains(msg, "prefix, course, maxWorkers, minWorkers,") {
			t.Errorf("-c %s=5: the error does not name the key and Surge's keys: %v", key, err)
		}
		if hint := "did you mean " + meant + "?"; meant != "" && !strings.Contains(msg, hint) {
			t.Errorf("-c %s=5: no %q in %v", key, hint, err)
		}
	}

	flags := map[string]string{"modelDir": modelDir, "ortLib": ortLib, "course": "2026"}
	ctx := cliContext(t, flags)
	maps.Copy(ctx, map[string]any{
		// A feature flag of cdk.json's, as `cdk init` writes them.
		"@aws-cdk/aws-lambda:recognizeLayerVersion": true,
		// cdk deploy --no-version-reporting.
		"aws:cdk:disable-version-reporting": true,
		// A lookup cached in cdk.context.json.
		"availability-zones:account=123456789012:region=us-east-1": []any{"us-east-1a", "us-east-1b"},
		// cdk acknowledge, cdk cli-telemetry, cdk migrate.
		"acknowledged-issue-numbers": []any{34892.0},
		"cli-telemetry":              false,
		"cdk-migrate":                true,
	})
	if _, err := configFromContext(contextNode(ctx), repo); err != nil {
		t.Errorf("the CDK's own context keys are refused: %v", err)
	}
}

func TestCDKKey(t *testing.T) {
	for key, cdk := range map[string]bool{
		"@aws-cdk/core:newStyleStackSynthesis":                       true,
		"@aws-cdk-containers/ecs-service-extensions:enableLogging":   true,
		"aws:cdk:bundling-stacks":                                    true,
		"aws:cdk:enable-path-metadata":                               true,
		"availability-zones:account=123456789012:region=us-east-1":   true,
		"ssm:account=123456789012:parameterName=/x:region=eu-west-1": true,
		"acknowledged-issue-numbers":                                 true,
		"cli-telemetry":                                              true,
		"cdk-migrate":                                                true,
		"maxWorkers":                                                 false,
		"maxWorker":                                                  false,
		"max-workers":                                                false,
		"telemetry":                                                  false,
	} {
		if got := cdkKey(key); got != cdk {
			t.Errorf("cdkKey(%q) = %v, want %v", key, got, cdk)
		}
	}
}

func TestClosestKey(t *testing.T) {
	known := []string{"prefix", "course", "maxWorkers", "minWorkers", "vpcId", "subnetIds", "courseNames", "ssm"}
	for key, want := range map[string]string{
		"maxWorker":   "maxWorkers",
		"maxworkers":  "maxWorkers",
		"MAXWORKERS":  "maxWorkers",
		"minWorker":   "minWorkers",
		"prefx":       "prefix",
		"subnets":     "subnetIds",
		"vpcID":       "vpcId",
		"courseName":  "courseNames",
		"colour":      "",
		"ssn":         "ssm",
		"x":           "",
		"workerCount": "",
	} {
		if got := closest(key, known); got != want {
			t.Errorf("closest(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestPrefixAndStackName(t *testing.T) {
	for prefix, stack := range map[string]string{
		"surge":                 "surge",
		"surge-yourname":        "surge-yourname",
		"x":                     "x",
		"1225754101":            "surge-1225754101",
		"9":                     "surge-9",
		"2026-course":           "surge-2026-course",
		strings.Repeat("a", 40): strings.Repeat("a", 40),
		// Invalid: upper case, underscores, dots, hyphens at either end,
		// S3's reserved beginnings, too long.
		"Surge": "", "surge_prod": "", "surge.prod": "", "-surge": "", "surge-": "", "": "",
		"xn--surge": "", "sthree-surge": "", "amzn-s3-demo-surge": "", strings.Repeat("a", 41): "",
	} {
		if valid := validPrefix(prefix); valid != (stack != "") {
			t.Errorf("validPrefix(%q) = %v", prefix, valid)
			continue
		}
		if stack == "" {
			continue
		}
		if got := stackName(prefix); got != stack {
			t.Errorf("stackName(%q) = %q, want %q", prefix, got, stack)
		}
		if !regexp.MustCompile(`^[a-zA-Z][-a-zA-Z0-9]*$`).MatchString(stackName(prefix)) || len(stackName(prefix)) > 128 {
			t.Errorf("stackName(%q) = %q, which CloudFormation refuses", prefix, stackName(prefix))
		}
	}
}

func TestBurstable(t *testing.T) {
	for typ, want := range map[string]bool{
		"t2.micro": true, "t3.small": true, "t3a.medium": true, "t4g.small": true, "t3.2xlarge": true,
		"c7i.large": false, "m7i-flex.large": false, "m5.large": false, "c6a.large": false, "r6i.large": false,
		"trn1.2xlarge": false, "a1.medium": false,
	} {
		if got := burstable(typ); got != want {
			t.Errorf("burstable(%q) = %v, want %v", typ, got, want)
		}
	}
}
