package main

// The time zone database, so that a policy's time.clock or time.weekday
// with a zone ("Europe/Berlin") works where the system has none, as in a
// distroless container (about 450 KB).
import _ "time/tzdata"
