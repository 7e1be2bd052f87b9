package main

import "tandem/internal/raidcli"

func init() { subcommands = append(subcommands, raidcli.Command) }
