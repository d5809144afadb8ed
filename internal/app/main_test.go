package app

import (
	"os"
	"testing"

	"github.com/gin-gonic/gin"
)

func TestMain(m *testing.M) {
	// gin's mode is process-wide: release mode, as keygate serve runs it,
	// so the tests' output is not the route table.
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}
