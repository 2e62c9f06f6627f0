package cluster

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseNodes(t *testing.T) {
	cases := map[string]struct {
		in      string
		want    []NodeEntry
		wantErr bool
	}{
		"a fresh node": {
			in: "c67fddee63a905b5a3174bc9d1d25a7c0f54c5a9 127.0.0.10:6379@16379 myself,master - 0 0 0 connected\n",
			want: []NodeEntry{{
				ID: "c67fddee63a905b5a3174bc9d1d25a7c0f54c5a9", IP: "127.0.0.10", Port: 6379, BusPort: 16379,
				Flags: []string{"myself", "master"}, Connected: true,
			}},
		},
		"a formed cluster seen by a replica, with a stale peer and a slot on the move": {
			in: "07c37dfeb235213a872192d90877d0cd55635b91 10.0.0.5:6379@16379,cache-0 myself,slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n" +
				"e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 10.0.0.6:6379@16379 master - 0 1426238316232 4 connected 0-5460 5462 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]\n" +
				"67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 10.0.0.7:6379@16379 master,fail - 1426238316232 1426238316232 2 disconnected 5463-16383 [5461-<-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]\n" +
				"292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f :0@0 master,noaddr - 0 0 0 disconnected\n",
			want: []NodeEntry{
				{ID: "07c37dfeb235213a872192d90877d0cd55635b91", IP: "10.0.0.5", Port: 6379, BusPort: 16379, Hostname: "cache-0",
					Flags: []string{"myself", "slave"}, MasterID: "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca", ConfigEpoch: 4, Connected: true},
				{ID: "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca", IP: "10.0.0.6", Port: 6379, BusPort: 16379,
					Flags: []string{"master"}, ConfigEpoch: 4, Connected: true,
					Slots: []SlotRange{{0, 5460}, {5462, 5462}}, Migrating: []SlotMove{{Slot: 5461, Peer: "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"}}},
				{ID: "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1", IP: "10.0.0.7", Port: 6379, BusPort: 16379,
					Flags: []string{"master", "fail"}, ConfigEpoch: 2,
					Slots: []SlotRange{{5463, 16383}}, Importing: []SlotMove{{Slot: 5461, Peer: "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"}}},
				{ID: "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f", Port: 0, BusPort: 0, Flags: []string{"master", "noaddr"}},
			},
		},
		"IPv6": {
			in: "c67fddee63a905b5a3174bc9d1d25a7c0f54c5a9 fd00::1:6379@16379 myself,master - 0 0 0 connected\n",
			want: []NodeEntry{{
				ID: "c67fddee63a905b5a3174bc9d1d25a7c0f54c5a9", IP: "fd00::1", Port: 6379, BusPort: 16379,
				Flags: []string{"myself", "master"}, Connected: true,
			}},
		},
		"too few fields":    {in: "c67f 127.0.0.10:6379@16379 myself,master - 0 0\n", wantErr: true},
		"no bus port":       {in: "c67f 127.0.0.10:6379 myself,master - 0 0 0 connected\n", wantErr: true},
		"slot out of range": {in: "c67f 127.0.0.10:6379@16379 myself,master - 0 0 0 connected 0-16384\n", wantErr: true},
		"backwards range":   {in: "c67f 127.0.0.10:6379@16379 myself,master - 0 0 0 connected 10-5\n", wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseNodes(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error: %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseNodes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseInfo(t *testing.T) {
	got := ParseInfo("cluster_state:fail\r\ncluster_slots_assigned:16384\r\n# Cluster\r\ncluster_known_nodes:6\r\n\r\n")
	want := map[string]string{"cluster_state": "fail", "cluster_slots_assigned": "16384", "cluster_known_nodes": "6"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseInfo (-want +got):\n%s", diff)
	}
}

func FuzzParseNodes(f *testing.F) {
	f.Add("07c37dfeb235213a872192d90877d0cd55635b91 10.0.0.5:6379@16379,cache-0 myself,slave e7d1 0 1 4 connected 0-5460 [5461->-67ed]\n")
	f.Add(":0@0")
	f.Fuzz(func(t *testing.T, s string) {
		view, err := ParseNodes(s)
		if err != nil {
			return
		}
		for _, e := range view {
			for _, r := range e.Slots {
				if r.First < 0 || r.Last < r.First || r.Last >= SlotCount {
					t.Fatalf("range %v accepted", r)
				}
			}
		}
	})
}
