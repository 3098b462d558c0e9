package ignition

import (
	"fmt"
	"mime"
	"strconv"
	"strings"
)

// Spec is the Ignition config spec family a client gets.
type Spec int

const (
	// SpecV3 is spec 3.x, the version cluster.butane_version translates to
	// (flatcar 1.0.0 -> 3.3.0, 1.1.0 -> 3.4.0). Flatcar since 3185 runs
	// Ignition v2, which reads it.
	SpecV3 Spec = iota
	// SpecLegacy is spec 2.3.0 for old Flatcar releases running Ignition v0.x.
	SpecLegacy
)

func (s Spec) String() string {
	switch s {
	case SpecV3:
		return "v3"
	case SpecLegacy:
		return "legacy"
	}
	return fmt.Sprintf("Spec(%d)", int(s))
}

// ignitionVersions maps Butane flatcar versions to the Ignition spec they produce.
var ignitionVersions = map[string]string{"1.0.0": "3.3.0", "1.1.0": "3.4.0"}

// SpecVersion is the Ignition spec version a render with spec produces for
// the given Butane flatcar version, e.g. for a Content-Type header.
func SpecVersion(butaneVersion string, spec Spec) (string, error) {
	if spec == SpecLegacy {
		return LegacyVersion, nil
	}
	v, ok := ignitionVersions[butaneVersion]
	if !ok {
		return "", fmt.Errorf("unsupported Butane flatcar version %q: use 1.0.0 or 1.1.0", butaneVersion)
	}
	return v, nil
}

// ignitionMediaType is the media type Ignition clients ask for.
const ignitionMediaType = "application/vnd.coreos.ignition+json"

// SpecFromAccept picks the spec for a client from its Accept header.
// Ignition v2 (spec 3) sends
//
//	application/vnd.coreos.ignition+json;version=3.4.0, */*;q=0.1
//
// and legacy Ignition v0.x sends
//
//	application/vnd.coreos.ignition+json; version=2.2.0, application/vnd.coreos.ignition+json; version=1; q=0.5, */*; q=0.1
//
// A client gets SpecLegacy only when it offers 1.x or 2.x and no 3.x; any
// other header (none, */*, curl's) gets SpecV3.
func SpecFromAccept(header string) Spec {
	legacy := false
	for _, r := range strings.Split(header, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(r))
		if err != nil || mt != ignitionMediaType {
			continue
		}
		if q, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(q, 64); err == nil && f <= 0 {
				continue
			}
		}
		major, _, _ := strings.Cut(params["version"], ".")
		switch major {
		case "3":
			return SpecV3
		case "1", "2":
			legacy = true
		}
	}
	if legacy {
		return SpecLegacy
	}
	return SpecV3
}
