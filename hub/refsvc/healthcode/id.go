package healthcode

import (
	"errors"
	"fmt"
	"strconv"
)

// idPrefix is the 5-digit prefix every synthetic person ID starts with; the
// 12 digits after it are the person's index in the seeded population.
const idPrefix = "33010"

// ID formats are 18 characters like a resident identity card number: 17
// digits and an ISO 7064 MOD 11-2 check character (0-9 or X).
var (
	errIDLength = errors.New("id must be 18 characters")
	errIDDigits = errors.New("id must be 17 digits followed by a digit or X")
	errIDCheck  = errors.New("id check character does not match")
	errIDPrefix = errors.New("id is not from this service's population (prefix " + idPrefix + ")")
)

// PersonID returns the ID of person i (0 ≤ i < 10^12) of the seeded
// population. The load generator uses it to scan existing people.
func PersonID(i int) string {
	body := fmt.Sprintf("%s%012d", idPrefix, i)
	return body + string(checkChar(body))
}

// ParseID validates an ID's format and check character and returns the
// person's index. The error says what is wrong with the ID.
func ParseID(s string) (int, error) {
	if len(s) != 18 {
		return 0, errIDLength
	}
	for i := 0; i < 17; i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errIDDigits
		}
	}
	if c := s[17]; !(c >= '0' && c <= '9') && c != 'X' {
		return 0, errIDDigits
	}
	if checkChar(s[:17]) != s[17] {
		return 0, errIDCheck
	}
	if s[:5] != idPrefix {
		return 0, errIDPrefix
	}
	n, err := strconv.Atoi(s[5:17])
	if err != nil {
		return 0, errIDDigits
	}
	return n, nil
}

// checkChar is the ISO 7064 MOD 11-2 check character of 17 digits, as GB
// 11643 defines it for resident identity numbers.
func checkChar(body string) byte {
	weights := [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i := 0; i < 17; i++ {
		sum += int(body[i]-'0') * weights[i]
	}
	return "10X98765432"[sum%11]
}
