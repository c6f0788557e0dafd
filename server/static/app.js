// tickcast demo page
