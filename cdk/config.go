package main

import (
	"debug/elf"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/jsii-runtime-go"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/deploy"
)

// Config is everything a deployment can be told, through CDK context
// (`cdk deploy -c key=value`); the defaults are options'.
type Config struct {
	Prefix string // names every resource
	// StackName is the CloudFormation stack's: see stackName.
	StackName string
	// Course is the course grader to deploy for ("" for none, or
	// "2026"); it changes the defaults of MaxWorkers and CourseNames.
	Course string
	// CourseLimit is the most workers the course's grader accepts; 0
	// without a course.
	CourseLimit        int
	MaxWorkers         int // fleet cap
	MinWorkers         int // workers kept running with no backlog, at most MaxWorkers
	WorkerInstanceType string
	WebInstanceType    string
	// WebMax, above 1, puts the web tier behind an Application Load
	// Balancer as an Auto Scaling group of WebMin to WebMax instances; 1
	// is the one web-instance the course's graders expect.
	WebMax, WebMin int
	AllowedCIDR    string   // who may reach port 8000; empty closes it
	VpcID          string   // an existing VPC, else a new one
	SubnetIDs      []string // public subnets of that VPC
	ModelDir       string   // local model folder (model.onnx, labels.txt)
	ModelURL       string   // or a model archive URL for workers to fetch...
	ModelSHA256    string   // ...with its digest
	Gallery        string   // optional gallery file: recognise faces
	RuntimeLib     string   // local ONNX Runtime library for the workers' architecture
	// WorkerArch and WebArch are the Go architectures (amd64, arm64) of
	// the tiers' instance types: what their binaries are built for.
	WorkerArch, WebArch string
	// CourseNames names the buckets exactly as docs/protocol.md does
	// (<prefix>-in-bucket, <prefix>-out-bucket), as the course's graders
	// look for them; bucket names are global, so by default CloudFormation
	// makes unique ones.
	CourseNames bool
	// RetainData keeps the buckets and the results table, and what they
	// hold, when the stack is destroyed; by default destroy empties and
	// deletes them.
	RetainData bool
	// PointInTimeRecovery turns on the results table's continuous
	// backups (billed per GB-month).
	PointInTimeRecovery bool
	// ScalerReservedConcurrency reserves Lambda concurrency for the
	// scaler; 0 reserves none. Accounts must keep 10 unreserved, so on a
	// new account (limit 10) any reservation fails the deployment, and
	// overlapping scaler invocations are safe anyway.
	ScalerReservedConcurrency int
	// PoolSize is how many booted workers the scaler keeps stopped, to
	// start in place of launches (a warm pool; stopped, they pay for
	// their volumes only). 0 keeps none: every drained worker is
	// terminated, as before the pool.
	PoolSize int
	// AlarmEmail subscribes an address to a topic of the stack's that
	// the dead-letter alarm notifies (AWS mails a confirmation first);
	// AlarmTopicArn names an existing topic instead. Neither: the alarm
	// notifies no one, and shows on the dashboard.
	AlarmEmail    string
	AlarmTopicArn string
	// SSM lets Session Manager reach the instances (no SSH, no open
	// port).
	SSM              bool
	IdleShutdown     string // a worker with no work this long terminates its instance
	ScalerTick       string // how often the scaler Lambda reconciles
	BootDeadline     string // a worker not ready this long after launch is replaced
	LogRetentionDays int
	Repo             string // repository root, for builds
}

// option is one of Surge's context keys and its default.
type option struct {
	key string
	def string // the value when the context does not set key; "" for none
}

// options are Surge's context keys with their defaults, in the order of
// docs/aws.md's table: the one list that configFromContext reads them by
// and the docs follow (TestContextOptionsDocumented). A course changes the
// defaults of maxWorkers and courseNames; modelDir and ortLib default to
// where this machine keeps them.
func options(repo string, grader course) []option {
	return []option{
		{"prefix", "surge"},
		{"course", ""},
		{"maxWorkers", strconv.Itoa(grader.maxWorkers())},
		{"minWorkers", "0"},
		// Workers exist only while there is work, so they never save CPU
		// credits: a burstable type would run them at its baseline or bill
		// surplus credits (docs/aws.md, Cost).
		{"workerInstanceType", "c7i.large"},
		{"webInstanceType", "t3.small"},
		{"webMax", "1"},
		{"webMin", "2"},
		{"allowedCidr", ""},
		{"vpcId", ""},
		{"subnetIds", ""},
		{"courseNames", strconv.FormatBool(grader.exactNames)},
		{"retainData", "false"},
		{"pointInTimeRecovery", "false"},
		{"scalerReservedConcurrency", "0"},
		{"poolSize", "0"},
		{"ssm", "true"},
		{"modelDir", defaultModelDir(repo)},
		{"modelUrl", ""},
		{"modelSha256", ""},
		{"gallery", ""},
		// Empty: the library for the workers' architecture in the cache.
		{"ortLib", ""},
		{"idleShutdown", "60s"},
		{"scalerTick", "3s"},
		{"bootDeadline", "5m"},
		{"logRetentionDays", "14"},
		{"alarmEmail", ""},
		{"alarmTopicArn", ""},
	}
}

// contextReader is what the configuration is read from: a CDK app's node.
type contextReader interface {
	TryGetContext(*string) interface{}
	GetAllContext(*map[string]interface{}) interface{}
}

// configFromContext reads the context, applying the defaults of options
// and checking what it can before anything is built.
func configFromContext(node contextReader, repo string) (Config, error) {
	// given is the context's value for key as text ("" when unset): the
	// CLI passes -c values as strings, cdk.json's as JSON.
	given := func(key string) string {
		switch v := node.TryGetContext(jsii.String(key)).(type) {
		case string:
			return v
		case float64:
			return strconv.FormatFloat(v, 'f', -1, 64)
		case bool:
			return strconv.FormatBool(v)
		}
		return ""
	}
	var errs []error
	// The course comes first: it sets other keys' defaults.
	grader, err := courseFor(given("course"))
	if err != nil {
		errs = append(errs, err)
	}
	opts := options(repo, grader)
	if err := unknownKeys(node, opts); err != nil {
		errs = append(errs, err)
	}
	defaults := map[string]string{}
	for _, o := range opts {
		defaults[o.key] = o.def
	}
	str := func(key string) string {
		def, ok := defaults[key]
		if !ok {
			panic(fmt.Sprintf("context key %q is read but not among options", key))
		}
		if v := given(key); v != "" {
			return v
		}
		return def
	}
	cfg := Config{
		Prefix:             str("prefix"),
		WorkerInstanceType: str("workerInstanceType"),
		WebInstanceType:    str("webInstanceType"),
		AllowedCIDR:        str("allowedCidr"),
		VpcID:              str("vpcId"),
		ModelDir:           str("modelDir"),
		ModelURL:           str("modelUrl"),
		ModelSHA256:        str("modelSha256"),
		Gallery:            str("gallery"),
		RuntimeLib:         str("ortLib"),
		IdleShutdown:       str("idleShutdown"),
		ScalerTick:         str("scalerTick"),
		BootDeadline:       str("bootDeadline"),
		AlarmEmail:         str("alarmEmail"),
		AlarmTopicArn:      str("alarmTopicArn"),
		Course:             str("course"),
		CourseLimit:        grader.limit,
		Repo:               repo,
	}
	if cfg.MaxWorkers, err = strconv.Atoi(str("maxWorkers")); err != nil || cfg.MaxWorkers < 1 {
		errs = append(errs, fmt.Errorf("maxWorkers must be a positive integer"))
	}
	if cfg.MinWorkers, err = strconv.Atoi(str("minWorkers")); err != nil || cfg.MinWorkers < 0 || cfg.MinWorkers > cfg.MaxWorkers {
		errs = append(errs, fmt.Errorf("minWorkers must be a whole number no greater than maxWorkers (%d)", cfg.MaxWorkers))
	}
	if cfg.WebMax, err = strconv.Atoi(str("webMax")); err != nil || cfg.WebMax < 1 {
		errs = append(errs, fmt.Errorf("webMax must be a positive integer (1: one web instance; N > 1: a load balancer in front of 2 to N)"))
	}
	if cfg.WebMin, err = strconv.Atoi(str("webMin")); err != nil || cfg.WebMin < 2 || cfg.WebMax > 1 && cfg.WebMin > cfg.WebMax {
		errs = append(errs, fmt.Errorf("webMin must be a whole number from 2 (one instance in each of two zones) to webMax (%d)", cfg.WebMax))
	}
	if cfg.WebMax <= 1 && given("webMin") != "" {
		errs = append(errs, errors.New("webMin sizes the web group, which only webMax above 1 makes"))
	}
	if cfg.WebMax > 1 && grader.limit > 0 {
		// Its grader checks for exactly one running web-instance and
		// posts to it on port 8000, not to a load balancer's port 80.
		errs = append(errs, fmt.Errorf("webMax %d with course=%s: the course's grader expects one web-instance on port %d; leave webMax out", cfg.WebMax, given("course"), events.WebPort))
	}
	if cfg.LogRetentionDays, err = strconv.Atoi(str("logRetentionDays")); err != nil || cfg.LogRetentionDays < 1 {
		errs = append(errs, fmt.Errorf("logRetentionDays must be a positive integer"))
	}
	if cfg.ScalerReservedConcurrency, err = strconv.Atoi(str("scalerReservedConcurrency")); err != nil || cfg.ScalerReservedConcurrency < 0 {
		errs = append(errs, fmt.Errorf("scalerReservedConcurrency must be a whole number (0 reserves none)"))
	}
	if cfg.PoolSize, err = strconv.Atoi(str("poolSize")); err != nil || cfg.PoolSize < 0 {
		errs = append(errs, fmt.Errorf("poolSize must be a whole number (0 keeps no warm pool)"))
	}
	for key, dst := range map[string]*bool{
		"courseNames": &cfg.CourseNames, "retainData": &cfg.RetainData, "ssm": &cfg.SSM, "pointInTimeRecovery": &cfg.PointInTimeRecovery,
	} {
		switch v := str(key); v {
		case "true", "false":
			*dst = v == "true"
		default:
			errs = append(errs, fmt.Errorf("%s must be true or false, not %q", key, v))
		}
	}
	for key, v := range map[string]string{"idleShutdown": cfg.IdleShutdown, "scalerTick": cfg.ScalerTick, "bootDeadline": cfg.BootDeadline} {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s %q is not a positive duration such as 90s or 5m", key, v))
		}
	}
	if s := str("subnetIds"); s != "" {
		cfg.SubnetIDs = strings.Split(s, ",")
	}
	if (cfg.VpcID == "") != (len(cfg.SubnetIDs) == 0) {
		errs = append(errs, errors.New("vpcId and subnetIds go together: an existing VPC needs its public subnets"))
	}
	if cfg.WebMax > 1 && cfg.VpcID != "" && len(cfg.SubnetIDs) < 2 {
		// An Application Load Balancer needs subnets in two zones.
		errs = append(errs, fmt.Errorf("webMax %d needs at least two subnetIds, in different Availability Zones: an Application Load Balancer spans two zones", cfg.WebMax))
	}
	if cfg.AllowedCIDR != "" {
		if _, err := netip.ParsePrefix(cfg.AllowedCIDR); err != nil {
			errs = append(errs, fmt.Errorf("allowedCidr %q is not a CIDR block", cfg.AllowedCIDR))
		}
	}
	cfg.WorkerArch, cfg.WebArch = deploy.InstanceArch(cfg.WorkerInstanceType), deploy.InstanceArch(cfg.WebInstanceType)
	if !validPrefix(cfg.Prefix) {
		errs = append(errs, fmt.Errorf("prefix %q: use 1-40 lower-case letters, digits and hyphens, starting and ending with a letter or digit, and not with xn--, sthree- or amzn-s3-demo- (S3 keeps those); it names the queues, buckets and table", cfg.Prefix))
	}
	cfg.StackName = stackName(cfg.Prefix)
	if cfg.AlarmEmail != "" && cfg.AlarmTopicArn != "" {
		errs = append(errs, errors.New("alarmEmail and alarmTopicArn: give one (a topic of the stack's with that subscription, or your topic)"))
	}
	if e := cfg.AlarmEmail; e != "" && (strings.Count(e, "@") != 1 || strings.HasPrefix(e, "@") || strings.HasSuffix(e, "@") || strings.ContainsAny(e, " ,;")) {
		errs = append(errs, fmt.Errorf("alarmEmail %q is not an email address", e))
	}
	if a := cfg.AlarmTopicArn; a != "" && !(strings.HasPrefix(a, "arn:") && strings.Contains(a, ":sns:") && len(strings.Split(a, ":")) == 6) {
		errs = append(errs, fmt.Errorf("alarmTopicArn %q is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)", a))
	}
	if cfg.ModelURL != "" {
		if cfg.ModelSHA256 == "" {
			errs = append(errs, errors.New("modelUrl needs modelSha256"))
		}
	} else {
		for _, f := range []string{"model.onnx", "labels.txt"} {
			if _, err := os.Stat(filepath.Join(cfg.ModelDir, f)); err != nil {
				errs = append(errs, fmt.Errorf("modelDir %s has no %s (set -c modelDir=... or -c modelUrl=...)", cfg.ModelDir, f))
			}
		}
	}
	if cfg.RuntimeLib == "" {
		cfg.RuntimeLib = defaultRuntimeLib(repo, cfg.WorkerArch)
	}
	if err := runtimeLibFor(cfg.RuntimeLib, cfg.WorkerArch); err != nil {
		errs = append(errs, fmt.Errorf("ortLib: %w", err))
	}
	if cfg.Gallery != "" {
		if _, err := os.Stat(cfg.Gallery); err != nil {
			errs = append(errs, fmt.Errorf("gallery: %v", err))
		}
	}
	return cfg, errors.Join(errs...)
}

// unknownKeys refuses the context's keys that are neither Surge's nor
// the CDK's: a misspelt key would otherwise be ignored, and its default
// deployed.
func unknownKeys(node contextReader, opts []option) error {
	all, ok := node.GetAllContext(nil).(map[string]interface{})
	if !ok {
		return fmt.Errorf("reading the context's keys: got %T", node.GetAllContext(nil))
	}
	var known, unknown []string
	for _, o := range opts {
		known = append(known, o.key)
	}
	for _, k := range slices.Sorted(maps.Keys(all)) {
		if cdkKey(k) || slices.Contains(known, k) {
			continue
		}
		if meant := closest(k, known); meant != "" {
			k = fmt.Sprintf("%q (did you mean %s?)", k, meant)
		} else {
			k = fmt.Sprintf("%q", k)
		}
		unknown = append(unknown, k)
	}
	if len(unknown) == 0 {
		return nil
	}
	keys := "key"
	if len(unknown) > 1 {
		keys = "keys"
	}
	return fmt.Errorf("unknown context %s %s; Surge's keys are %s (the CDK's own, @..., aws:cdk:..., cdk-..., pass)",
		keys, strings.Join(unknown, ", "), strings.Join(known, ", "))
}

// cdkKey reports whether a context key is the CDK's rather than Surge's.
// The CLI and the library key theirs with a colon (aws:cdk:bundling-stacks,
// lookups cached in cdk.context.json such as
// availability-zones:account=...:region=...) or an @ (feature flags,
// @aws-cdk/core:...); cdk-migrate, acknowledged-issue-numbers and
// cli-telemetry are what `cdk migrate`, `cdk acknowledge` and `cdk
// cli-telemetry` write. Surge's keys are plain words, so none is taken
// for the CDK's.
func cdkKey(k string) bool {
	return strings.HasPrefix(k, "@") || strings.Contains(k, ":") || strings.HasPrefix(k, "cdk-") ||
		k == "acknowledged-issue-numbers" || k == "cli-telemetry"
}

// closest is the known key a misspelt one most likely meant, ignoring
// case, or "" when none is within a third of its length of edits.
func closest(key string, known []string) string {
	best, bestDist := "", 0
	for _, k := range known {
		d := editDistance(strings.ToLower(key), strings.ToLower(k))
		if d*3 <= len(key) && (best == "" || d < bestDist) {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev = cur
	}
	return prev[len(b)]
}

// course is what a course's grader expects of a deployment, and so what
// the `course` context changes the defaults to.
type course struct {
	limit      int  // the most workers the grader accepts; 0: none
	exactNames bool // it finds the buckets by docs/protocol.md's exact names
}

func (c course) maxWorkers() int {
	if c.limit > 0 {
		return c.limit
	}
	return events.DefaultMaxWorkers
}

// courseFor is the course a `course` context value names; empty names
// none.
func courseFor(name string) (course, error) {
	switch name {
	case "":
		return course{}, nil
	case "2026":
		// Its grader fails a fleet above 15 and looks the buckets up by
		// name (docs/protocol.md, "The newest rubric").
		return course{limit: events.Course2026MaxWorkers, exactNames: true}, nil
	}
	return course{}, fmt.Errorf("course %q: valid values are 2026 (the course's 2026 grader) or empty (none)", name)
}

// validPrefix: the prefix begins the queues', buckets' and table's names
// and, through the stack's name, those CloudFormation makes for the rest.
// SQS takes letters, digits, hyphens and underscores, up to 80
// ("<prefix>-resp-queue"); S3 lower-case letters, digits, dots and
// hyphens, 3-63, beginning and ending with a letter or digit, never
// beginning with xn--, sthree- or amzn-s3-demo- (and no dots here, so no
// name looks like an IP address); DynamoDB 3-255 of [a-zA-Z0-9_.-]. A
// stack name must start with a letter, which stackName sees to.
func validPrefix(p string) bool {
	if len(p) < 1 || len(p) > 40 || p[0] == '-' || p[len(p)-1] == '-' {
		return false
	}
	for _, reserved := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(p, reserved) {
			return false
		}
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// stackName is the CloudFormation stack's name for a valid prefix: the
// prefix, as it always was, if it starts with a letter, so existing
// deployments keep their stack; else surge-<prefix>, since a stack name
// must start with a letter ([a-zA-Z][-a-zA-Z0-9]*, at most 128) and the
// 2026 course names everything after a 10-digit ASU ID.
func stackName(prefix string) string {
	if prefix != "" && prefix[0] >= 'a' && prefix[0] <= 'z' {
		return prefix
	}
	return "surge-" + prefix
}

// burstable reports whether an instance type earns CPU credits (T2, T3,
// T3a, T4g): the only types that take a credit specification.
func burstable(instanceType string) bool {
	family, _, _ := strings.Cut(instanceType, ".")
	return slices.Contains([]string{"t2", "t3", "t3a", "t4g"}, family)
}

// defaultModelDir finds the default model where `make run` would: in the
// model directories of $SURGE_MODELS, else beside the repository in
// ../shared/models.
func defaultModelDir(repo string) string {
	for _, dir := range filepath.SplitList(os.Getenv("SURGE_MODELS")) {
		candidate := filepath.Join(dir, assets.DefaultModel)
		if _, err := os.Stat(filepath.Join(candidate, "model.onnx")); err == nil {
			return candidate
		}
	}
	return filepath.Join(repo, "..", "shared", "models", assets.DefaultModel)
}

// defaultRuntimeLib is where `make ort` leaves the library the workers
// of arch load.
func defaultRuntimeLib(repo, arch string) string {
	cache := os.Getenv("SURGE_CACHE")
	if cache == "" {
		cache = filepath.Join(repo, ".cache")
	}
	return filepath.Join(cache, filepath.FromSlash(assets.RuntimeFile(arch)))
}

// runtimeLibFor checks that lib is an ONNX Runtime library the workers of
// arch can load: an ELF shared object for that machine, needing no newer
// glibc than Amazon Linux 2023's.
func runtimeLibFor(lib, arch string) error {
	f, err := elf.Open(lib)
	if err != nil {
		return fmt.Errorf("%s: %w (run `make ort`, or set -c ortLib=...)", lib, err)
	}
	machine := f.Machine
	f.Close()
	if want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]; machine != want {
		return fmt.Errorf("%s is for %v, but the workers' instances are %s (%v)", lib, machine, arch, want)
	}
	if err := deploy.CheckGlibc(lib, deploy.GlibcAL2023); err != nil {
		return fmt.Errorf("%s will not load on Amazon Linux 2023: %w", lib, err)
	}
	return nil
}
