package cli

// Exit codes: curl's numbers where curl has one.
const (
	ExitOK          = 0
	ExitFailed      = 1  // anything else
	ExitUsage       = 2  // a bad flag or argument
	ExitResolve     = 6  // the host name could not be resolved
	ExitConnect     = 7  // no connection could be made
	ExitPartial     = 18 // the body was cut short
	ExitWrite       = 23 // the body could not be written
	ExitHTTP        = 22 // the final status was 400 or more
	ExitRead        = 26 // a -data-binary file changed while being sent
	ExitTimeout     = 28 // -timeout, -attempt-timeout or -connect-timeout passed
	ExitRedirects   = 47 // more redirects than -max-redirects
	ExitCertificate = 60 // the server's certificate could not be verified
	ExitSIGINT      = 130
	ExitSIGTERM     = 143
)
