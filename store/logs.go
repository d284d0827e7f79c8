package store

// Log settings (server/logging reads them): node-local, as CMS keeps its
// syslog settings per node and CommuniGate its log level per server.
const (
	LogLevel      = "log.level"      // `xmpp log level`: none|major|problems|low-level|all
	LogBodies     = "log.bodies"     // `xmpp log bodies`: "on" writes message bodies at level all
	SyslogEnabled = "syslog.enabled" // `syslog enable|disable`: "true" sends to the servers
	SyslogServers = "syslog.servers" // `syslog server add|del`: "host:port proto" a line
	SyslogAudit   = "syslog.audit"   // `syslog audit add`: the file in the files area the audit trail goes to
)
