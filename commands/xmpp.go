package commands

func xmppCommands() []*Command {
	return []*Command{
		{
			Words:   []string{"xmpp"},
			Summary: "Show the XMPP service's state",
			Help:    "The XMPP engine is not part of this release yet: this command only reports that.",
			Perm:    PermRead,
			Run: func(c *Ctx, args []string) error {
				c.printf("XMPP engine : not built yet in this release (Parley %s)\n", c.Version)
				return nil
			},
		},
	}
}
