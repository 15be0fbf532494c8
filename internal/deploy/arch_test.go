package deploy

import "testing"

func TestInstanceArch(t *testing.T) {
	for typ, arm := range map[string]bool{
		"t3.small": false, "t3a.medium": false, "m7i.large": false, "c5n.xlarge": false, "c7i.large": false,
		"g4dn.xlarge": false, "p4d.24xlarge": false, "hpc6a.48xlarge": false, "inf1.xlarge": false,
		"t4g.small": true, "m6g.large": true, "m7gd.xlarge": true, "c6gn.large": true, "c7g.large": true,
		"im4gn.large": true, "g5g.xlarge": true, "hpc7g.4xlarge": true, "a1.medium": true,
	} {
		want := map[bool]string{true: "arm64", false: "amd64"}[arm]
		if got := InstanceArch(typ); got != want {
			t.Errorf("InstanceArch(%q) = %s, want %s", typ, got, want)
		}
	}
}
