//! Use cases that wire pure logic to storage; shared by the server and the CLI.
