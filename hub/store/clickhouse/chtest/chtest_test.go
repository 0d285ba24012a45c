package chtest_test

import (
	"testing"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func TestNewDatabaseAndOpen(t *testing.T) {
	srv := chtest.Server(t)
	ctx := t.Context()

	var db string
	t.Run("use", func(t *testing.T) {
		db = chtest.NewDatabase(t)
		_, err := srv.QueryWithSettings(ctx,
			"CREATE TABLE "+db+".events (host LowCardinality(String), n UInt32) ENGINE = MergeTree() ORDER BY host",
			map[string]string{"allow_experimental_low_cardinality_type": "1"})
		if err != nil {
			t.Fatal(err)
		}

		conn := chtest.Open(t, db)
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO events (host, n)")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if err := batch.Append("h", uint32(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := batch.Send(); err != nil {
			t.Fatal(err)
		}
		var count uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM events").Scan(&count); err != nil || count != 10 {
			t.Fatalf("count = %d, %v; want 10", count, err)
		}
	})

	got, err := srv.Query(ctx, "SELECT count() FROM system.databases WHERE name = '"+db+"'")
	if err != nil {
		t.Fatal(err)
	}
	if got != "0\n" {
		t.Errorf("database %s still exists after its test ended", db)
	}
}

func TestNewDatabaseIsUnique(t *testing.T) {
	a, b := chtest.NewDatabase(t), chtest.NewDatabase(t)
	if a == b {
		t.Fatalf("two NewDatabase calls both returned %q", a)
	}
}
