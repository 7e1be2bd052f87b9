package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/cobra"

	"tandem/internal/api"
	"tandem/internal/config"
)

func init() { subcommands = append(subcommands, newDashboardCmd) }

func newDashboardCmd() *cobra.Command {
	var f clientFlags
	var base string
	var urlOnly bool
	cmd := &cobra.Command{
		Use:   "dashboard --url",
		Short: "Print a one-time login link to the web dashboard (valid 60 s, one use; asked over the unix socket)",
		Long: "Print a one-time login link to the web dashboard. The agent mints it when asked over its\n" +
			"unix socket (whoever may use the socket may open the dashboard); the link logs in once,\n" +
			"within 60 s, and the browser keeps a session cookie. The dashboard is on the API's TCP\n" +
			"listener (api.tcp_port); log in there with the API token instead if you have it.\n" +
			"See docs/dashboard.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !urlOnly {
				return exitWith(2, fmt.Errorf("say --url (the only thing this command does for now)"))
			}
			return f.call(func(ctx context.Context, c *api.Client) error {
				path, err := c.DashboardLoginPath(ctx)
				if err != nil {
					return err
				}
				if base == "" {
					base = dashboardBase(ctx, c, f.config)
				}
				fmt.Fprintln(cmd.OutOrStdout(), base+path)
				return nil
			})
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&urlOnly, "url", false, "print the login link")
	cmd.Flags().StringVar(&base, "base", "", "the dashboard's address as your browser reaches it, like http://db1:7790 (default: this node's first link address and api.tcp_port)")
	return cmd
}

// dashboardBase guesses http://ADDR:PORT from the configuration and the
// agent's name; "" (a bare path) when it cannot.
func dashboardBase(ctx context.Context, c *api.Client, cfgPath string) string {
	cfg, err := config.Load(cfgPath)
	if err != nil || cfg.API.TCPPort == 0 {
		return ""
	}
	st, err := c.Status(ctx)
	if err != nil {
		return ""
	}
	me, ok := cfg.NodeByName(st.Node)
	if !ok {
		return ""
	}
	addrs, err := cfg.LinkAddrs(me)
	if err != nil || len(addrs) == 0 {
		return ""
	}
	return "http://" + net.JoinHostPort(addrs[0].Addr().String(), strconv.Itoa(cfg.API.TCPPort))
}
