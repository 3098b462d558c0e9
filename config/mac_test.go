package config

import "testing"

func TestParseMAC(t *testing.T) {
	want := MAC{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}
	for _, s := range []string{"52-54-00-ab-cd-ef", "52:54:00:ab:cd:ef", "52-54-00-AB-CD-EF", "52:54:00:Ab:cD:eF"} {
		m, err := ParseMAC(s)
		if err != nil {
			t.Errorf("ParseMAC(%q): %v", s, err)
			continue
		}
		if m != want {
			t.Errorf("ParseMAC(%q) = %s, want %s", s, m, want)
		}
	}
	for _, s := range []string{
		"", "52-54-00-ab-cd", "52-54-00-ab-cd-ef-", "52-54-00-ab-cd-ef-01", "52:54-00:ab:cd:ef", "52-54-00-ab-cd-eg",
		"5254.00ab.cdef", "525400abcdef", "52_54_00_ab_cd_ef", "52-54-00-ab-cd-e", " 52-54-00-ab-cd-e",
		"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "52-54-00-ab-cd-ef\x00", "..%2f..%2fetc",
	} {
		if m, err := ParseMAC(s); err == nil {
			t.Errorf("ParseMAC(%q) = %s, want an error", s, m)
		}
	}
}

func TestMACForms(t *testing.T) {
	m := MAC{0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f}
	if got := m.HexHyp(); got != "52-54-00-ab-cd-0f" {
		t.Fatalf("HexHyp = %q", got)
	}
	if got := m.String(); got != "52:54:00:ab:cd:0f" {
		t.Fatalf("String = %q", got)
	}
	back, err := ParseMAC(m.HexHyp())
	if err != nil || back != m {
		t.Fatalf("round trip: %s, %v", back, err)
	}
	if hw, ok := MACFromHW(m.HW()); !ok || hw != m {
		t.Fatalf("MACFromHW(HW()) = %s, %v", hw, ok)
	}
	if _, ok := MACFromHW([]byte{1, 2, 3}); ok {
		t.Fatal("MACFromHW accepted 3 bytes")
	}
}
