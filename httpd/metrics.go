package httpd

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// metrics serves /metrics (admin listeners only: the counts say how many
// machines boot, which is the site's business).
func (s *Server) metrics(c echo.Context) error {
	if s.Metrics == nil {
		return textError(http.StatusNotFound, "metrics are not enabled in this server")
	}
	s.Metrics.Handler().ServeHTTP(c.Response(), c.Request())
	return nil
}
