package ocf

import (
	"context"
	"encoding/xml"
	"fmt"
	"slices"
)

// MetaData is the part of an agent's meta-data that the cluster uses: its
// parameters (to report missing or unknown ones when the configuration is
// checked) and its advertised actions with their default timeouts.
type MetaData struct {
	Name       string      `xml:"name,attr"`
	Version    string      `xml:"version"`
	Parameters []Parameter `xml:"parameters>parameter"`
	Actions    []Action    `xml:"actions>action"`
}

// Parameter is one instance parameter.
type Parameter struct {
	Name     string `xml:"name,attr"`
	Required bool   `xml:"-"`
	Unique   bool   `xml:"-"`
	Type     string `xml:"-"`
	Default  string `xml:"-"`
}

// Action is an advertised action; durations are as the agent wrote them
// ("20s").
type Action struct {
	Name     string `xml:"name,attr"`
	Timeout  string `xml:"timeout,attr"`
	Interval string `xml:"interval,attr"`
	Depth    string `xml:"depth,attr"`
}

// UnmarshalXML reads the boolean attributes, which agents write as 0/1 or
// false/true.
func (p *Parameter) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var raw struct {
		Name     string `xml:"name,attr"`
		Required string `xml:"required,attr"`
		Unique   string `xml:"unique,attr"`
		Content  struct {
			Type    string `xml:"type,attr"`
			Default string `xml:"default,attr"`
		} `xml:"content"`
	}
	if err := d.DecodeElement(&raw, &start); err != nil {
		return err
	}
	*p = Parameter{
		Name:     raw.Name,
		Required: raw.Required == "1" || raw.Required == "true",
		Unique:   raw.Unique == "1" || raw.Unique == "true",
		Type:     raw.Content.Type,
		Default:  raw.Content.Default,
	}
	return nil
}

// ParseMetaData parses the XML an agent prints for meta-data.
func ParseMetaData(b []byte) (*MetaData, error) {
	var m MetaData
	if err := xml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("ocf: meta-data: %w", err)
	}
	if m.Name == "" {
		return nil, fmt.Errorf("ocf: meta-data: no <resource-agent name=…> element")
	}
	return &m, nil
}

// Required lists the names of the required parameters.
func (m *MetaData) Required() []string {
	var names []string
	for _, p := range m.Parameters {
		if p.Required {
			names = append(names, p.Name)
		}
	}
	return names
}

// Missing lists the required parameters that params lacks, sorted.
func (m *MetaData) Missing(params map[string]string) []string {
	var names []string
	for _, n := range m.Required() {
		if _, ok := params[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Unknown lists the given parameters that the agent does not declare,
// sorted: usually a typo in the configuration.
func (m *MetaData) Unknown(params map[string]string) []string {
	var names []string
	for n := range params {
		if !slices.ContainsFunc(m.Parameters, func(p Parameter) bool { return p.Name == n }) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// CheckParams asks the agent for its meta-data and compares the configured
// parameters with it: missing lists required parameters not configured
// (an error at config check), unknown lists configured parameters the agent
// does not declare (most likely a typo).
func (a *Agent) CheckParams(ctx context.Context) (missing, unknown []string, err error) {
	b, err := a.MetaData(ctx)
	if err != nil {
		return nil, nil, err
	}
	m, err := ParseMetaData(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", a.prefix("meta-data"), err)
	}
	return m.Missing(a.params), m.Unknown(a.params), nil
}
