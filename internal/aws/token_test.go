package aws

import (
	"testing"
)

// Tokens are equal for equal inputs, differ when any input does, and fit
// EC2's limit of 64 ASCII characters.
func TestTokenDerivation(t *testing.T) {
	base := launchToken("prod", "app-tier-instance-1", "subnet-a", "event/1/2026-11-23T12:00:00Z")
	if again := launchToken("prod", "app-tier-instance-1", "subnet-a", "event/1/2026-11-23T12:00:00Z"); again != base {
		t.Fatalf("same inputs, tokens %q and %q", base, again)
	}
	seen := map[string]string{base: "base"}
	for what, tok := range map[string]string{
		"another fleet":     launchToken("test", "app-tier-instance-1", "subnet-a", "event/1/2026-11-23T12:00:00Z"),
		"another name":      launchToken("prod", "app-tier-instance-2", "subnet-a", "event/1/2026-11-23T12:00:00Z"),
		"another subnet":    launchToken("prod", "app-tier-instance-1", "subnet-b", "event/1/2026-11-23T12:00:00Z"),
		"no subnet":         launchToken("prod", "app-tier-instance-1", "", "event/1/2026-11-23T12:00:00Z"),
		"another event":     launchToken("prod", "app-tier-instance-1", "subnet-a", "event/2/2026-11-23T12:00:00Z"),
		"another minute":    launchToken("prod", "app-tier-instance-1", "subnet-a", "event/1/2026-11-23T12:01:00Z"),
		"parts run on":      launchToken("prod", "app-tier-instance-1subnet-a", "", "event/1/2026-11-23T12:00:00Z"),
		"chained once":      chainToken(base, "i-0123456789abcdef0"),
		"chained elsewhere": chainToken(base, "i-0123456789abcdef1"),
		"chained twice":     chainToken(chainToken(base, "i-0123456789abcdef0"), "i-0123456789abcdef1"),
	} {
		if other, dup := seen[tok]; dup {
			t.Errorf("%s gives the token of %s: %q", what, other, tok)
		}
		seen[tok] = what
	}
	if first, again := chainToken(base, "i-1"), chainToken(base, "i-1"); first != again {
		t.Error("chaining is not deterministic: duplicates would part ways")
	}
	for tok := range seen {
		if len(tok) > 64 {
			t.Errorf("token %q is longer than 64", tok)
		}
		for _, r := range tok {
			if r > 127 {
				t.Errorf("token %q is not ASCII", tok)
			}
		}
	}
}
