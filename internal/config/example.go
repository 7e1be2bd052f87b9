package config

import _ "embed"

// Example is a commented configuration that validates; `tandem config
// example` prints it.
//
//go:embed example.yaml
var Example string
