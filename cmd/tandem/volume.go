package main

import "tandem/internal/volumecli"

func init() { subcommands = append(subcommands, volumecli.Command) }
